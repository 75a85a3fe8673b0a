"""What flag evaluation adds to a request: ``Router.route`` with flags against the same call
with none (which only looks the default version up), per request, in microseconds.

    .venv/bin/python -m benchmarks.bench_flags [--requests 200000]

Cases: the DESIGN.md flags (a 90/10 canary split and a 50/50 shadow split) with a targeting
key; the same without a key (random bucket); attribute rules (if/in/==) in front of a split.
The model lookup is a dict stand-in, so the figures are the routing code alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from types import SimpleNamespace

from ortserve.core import InferRequest
from ortserve.rollout import FlagRouter as Router
from ortserve.rollout.flags import parse_flags

DESIGN = {
    "flags": {
        "digits": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "int8": "2"},
            "targeting": {"fractional": [["stable", 90], ["int8", 10]]},
        },
        "digits.shadow": {
            "state": "ENABLED",
            "defaultVariant": "pruned",
            "variants": {"off": "", "pruned": "4"},
            "targeting": {"fractional": [["off", 50], ["pruned", 50]]},
        },
    }
}
RULES = {
    "flags": {
        "digits": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "int8": "2"},
            "targeting": {
                "if": [
                    {"in": [{"var": "country"}, ["ch", "de"]]},
                    "int8",
                    {"==": [{"var": "tier"}, "gold"]},
                    "stable",
                    {"fractional": [["stable", 90], ["int8", 10]]},
                ]
            },
        }
    }
}


class Models:
    """The two ModelManager lookups the router uses, over a dict."""

    def __init__(self) -> None:
        self.versions = {v: SimpleNamespace(model="digits", version=v) for v in ("1", "2", "4")}
        self.entries = self.models = {"digits": None}

    def get(self, model: str, version: str = ""):
        return self.versions[version or "1"]


def timings(router: Router, requests: list[InferRequest]) -> list[float]:
    """Per-call time in microseconds (the clock's own cost is subtracted)."""
    clock = time.perf_counter_ns
    empty = [clock() - clock() for _ in range(2000)]
    tare = -statistics.median(empty)
    route = router.route
    out = []
    gc.disable()
    try:
        for r in requests:
            t0 = clock()
            route(r)
            out.append((clock() - t0 - tare) / 1000)
    finally:
        gc.enable()
    return out


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50_us": round(values[len(values) // 2], 2),
        "p99_us": round(values[int(len(values) * 0.99)], 2),
        "mean_us": round(statistics.fmean(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_flags",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    n = args.requests
    keyed = [
        InferRequest("digits", {}, targeting_key=f"user-{i}", attributes={"user-agent": "grpc-python"})
        for i in range(n)
    ]
    unkeyed = [InferRequest("digits", {}, attributes={"user-agent": "grpc-python"}) for _ in range(n)]
    attributed = [
        InferRequest(
            "digits",
            {},
            targeting_key=f"user-{i}",
            attributes={"country": ("ch", "fr", "us")[i % 3], "tier": ("gold", "free")[i % 2]},
        )
        for i in range(n)
    ]

    def router(doc: dict | None) -> Router:
        r = Router(Models())  # type: ignore[arg-type]
        if doc is not None:
            r.install(parse_flags(json.dumps(doc)))
        return r

    cases = {
        "no flags (baseline)": (router(None), keyed),
        "canary + shadow split, keyed": (router(DESIGN), keyed),
        "canary + shadow split, no key": (router(DESIGN), unkeyed),
        "attribute rules + split, keyed": (router(RULES), attributed),
    }
    results = {}
    for name, (r, reqs) in cases.items():
        timings(r, reqs[: n // 10])  # warm up
        results[name] = summary(timings(r, reqs))
    base = results["no flags (baseline)"]["p50_us"]
    print(
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, {n} requests per case"
    )
    for name, s in results.items():
        extra = "" if name.startswith("no flags") else f"  overhead p50 {s['p50_us'] - base:.2f} us"
        print(
            f"{name:34s} p50 {s['p50_us']:6.2f} us  p99 {s['p99_us']:6.2f} us  mean {s['mean_us']:6.2f} us{extra}"
        )


if __name__ == "__main__":
    main()
