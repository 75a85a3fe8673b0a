"""How long the status page takes to render, server-side (target: 200 ms).

    python -m benchmarks.bench_status [--renders 200] [--write-results]

Two measurements:
- in process (CPU time, which a loaded machine disturbs least, and wall clock): ``render_page`` of a large state (40 models x 5 versions, 200 charted series with a full
  10-minute history of 121 samples each, flags with splits), p50/p99/max over ``--renders`` renders, plus
  the history's ``series()`` that each page request computes too;
- on a real server (``python -m ortserve``, 8 models x 3 versions, a flags file, traffic from a client
  while the page is fetched): the ``Server-Timing: render`` figure the server reports for each ``GET /``,
  and the whole HTTP round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import command, digits_stand_in, machine, publish, write_section
from ortserve.metrics import Metrics
from ortserve.ops.status.history import MetricsHistory
from ortserve.ops.status.render import render_page
from ortserve.ops.status.state import ModelState, ServerState, VersionState, describe_flags

HEAD = "## status page: server-side render time"


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "max": ms[-1]}


def in_process(renders: int) -> dict[str, dict[str, float]]:
    metrics = Metrics()
    now = [0.0]
    history = MetricsHistory(metrics.registry, interval=5, window=600, clock=lambda: now[0])
    stats = [metrics.version(f"model{i}", str(v)) for i in range(40) for v in range(1, 6)]
    rng = np.random.default_rng(0)
    for _ in range(121):
        for s in stats:
            for _ in range(int(rng.integers(1, 4))):
                s.request("v1", "ok" if rng.random() > 0.02 else "invalid_input", float(rng.random() / 100))
        now[0] += 5
        history.sample()
    flags = json.dumps(
        {
            "flags": {
                f"model{i}": {
                    "defaultVariant": "a",
                    "variants": {"a": "1", "b": "2"},
                    "targeting": {"fractional": [["a", 90], ["b", 10]]},
                }
                for i in range(40)
            }
        }
    )
    state = ServerState(
        "server",
        tuple(
            ModelState(
                f"model{i}",
                "1",
                tuple(VersionState(str(v), True, v == 1, "ab" * 32, "no", True) for v in range(1, 6)),
            )
            for i in range(40)
        ),
        describe_flags(flags),
    )
    series_ms, render_ms, wall_ms = [], [], []
    for _ in range(renders):
        w = time.perf_counter()
        t = time.process_time()
        series = history.series()
        shadow = history.shadow()
        series_ms.append((time.process_time() - t) * 1000)
        t = time.process_time()
        render_page(state, series, window=600, refresh=5, shadow=shadow)
        render_ms.append((time.process_time() - t) * 1000)
        wall_ms.append((time.perf_counter() - w) * 1000)
    total = [a + b for a, b in zip(series_ms, render_ms, strict=True)]
    return {
        "history": _stats(series_ms),
        "render": _stats(render_ms),
        "total": _stats(total),
        "wall": _stats(wall_ms),
    }


def on_server(renders: int) -> dict[str, dict[str, float]]:
    from ortserve.client import Client
    from ortserve.testing import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        model = digits_stand_in()
        for i in range(8):
            for v in (1, 2, 3):
                publish(repo, f"digits{i}", v, model)
        flags = {
            f"digits{i}": {
                "defaultVariant": "a",
                "variants": {"a": "1", "b": "2"},
                "targeting": {"fractional": [["a", 90], ["b", 10]]},
            }
            for i in range(8)
        }
        (repo / "flags.json").write_text(json.dumps({"flags": flags}))
        server = ServerProcess(repo, "--status-interval", "1")
        stop = threading.Event()

        def load() -> None:
            x = {"input": np.zeros((1, 64), np.float32)}
            with Client(server.target) as c:
                i = 0
                while not stop.is_set():
                    c.predict(f"digits{i % 8}", x, targeting_key=str(i))
                    i += 1

        sender = threading.Thread(target=load, daemon=True)
        sender.start()
        try:
            time.sleep(5)  # a few samples in the history
            url = f"http://127.0.0.1:{server.metrics_port}/"
            render_ms, http_ms = [], []
            for _ in range(renders):
                t = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                    timing = r.headers["Server-Timing"]
                http_ms.append((time.perf_counter() - t) * 1000)
                render_ms.append(float(timing.split("dur=")[1]))
        finally:
            stop.set()
            sender.join(10)
            server.stop()
    return {"server_render": _stats(render_ms), "http": _stats(http_ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_status", description=__doc__)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--write-results", action="store_true", help="replace the section in RESULTS.md")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    local = in_process(args.renders)
    remote = on_server(args.renders)
    rows = [
        ("in process, CPU time: history.series() + shadow(), 200 series x 121 samples", local["history"]),
        ("in process, CPU time: render_page, 40 models x 5 versions, 200 charted series", local["render"]),
        ("in process, CPU time: both (what one page request costs)", local["total"]),
        ("in process, wall clock: both", local["wall"]),
        ("real server under load: Server-Timing render (8 models x 3 versions)", remote["server_render"]),
        ("real server under load: whole HTTP round trip", remote["http"]),
    ]
    table = "\n".join(
        f"| {name} | {s['p50']:.2f} ms | {s['p99']:.2f} ms | {s['max']:.2f} ms |" for name, s in rows
    )
    section = f"""{HEAD} (target: 200 ms)

Measured {time.strftime("%Y-%m-%d")} on {machine()}; load average {load:.1f} at the start;
{args.renders} renders each.

    {command("benchmarks.bench_status", argv if argv is not None else sys.argv[1:])}

| what | p50 | p99 | max |
|---|---|---|---|
{table}

The in-process rows are the worst case a page has to draw (600 charts); CPU time is what the rendering costs,
the wall clock what it took on the shared machine at that load. A server renders the page at most once per
sample and serves that rendering until the next one, so most real-server requests (the p50) are answered from
it; the p99 and max there are the renderings themselves.
"""
    print(section)
    if args.write_results:
        write_section(section, HEAD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
