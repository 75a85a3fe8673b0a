"""Event-loop stalls under load: the longest a 10 ms timer on the server's loop was late, and the
longest full (generation 2) garbage collection, with the objects made at startup frozen out of the
collector (``gc.freeze()``, what the server does) and without (``gc.unfreeze()`` after startup).

    python -m benchmarks.bench_loop_lag                   # prints the section
    python -m benchmarks.bench_loop_lag --write-results   # + benchmarks/RESULTS.md

The server runs in this process (an ``ortserve.ops.app.App`` on the demo repository built from the
untrained stand-in), the load generator in a subprocess: one-row v1 Predict at concurrency 32.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import DIGITS_CONFIG, publish
from benchmarks.loadgen import run_async

HEAD = "## Event-loop stalls: garbage collection (bench_loop_lag)"


async def _arm(repo: Path, frozen: bool, duration: float) -> dict[str, Any]:
    from ortserve.ops.app import App
    from ortserve.ops.settings import Settings

    pauses: list[tuple[int, float]] = []
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started.get("t", time.perf_counter())))

    app = App(Settings(model_repository=repo, port=0, metrics_port=-1))
    await app.startup()
    if not frozen:
        gc.unfreeze()
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t0 - 0.01)

    gc.callbacks.append(on_gc)
    tick = asyncio.ensure_future(ticker())
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--target", f"127.0.0.1:{app.port}", "--model", "digits",
           "--concurrency", "32", "--duration", str(duration), "--warmup", "1"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    summary = [line for line in out.decode().splitlines() if "req/s" in line]
    tick.cancel()
    gc.callbacks.remove(on_gc)
    app.handle_exit()
    await app.shutdown()
    gc.collect()
    full = [d for g, d in pauses if g == 2]
    lags.sort()
    return {
        "load": summary[-1].split(": ", 1)[-1].split(", p90")[0] if summary else "",
        "lag_max_ms": lags[-1] * 1e3 if lags else 0.0,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1e3 if lags else 0.0,
        "full_collections": len(full),
        "full_max_ms": max(full, default=0.0) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_loop_lag",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--write-results", action="store_true")
    p.add_argument("--results", type=Path, help="the RESULTS.md to update (implies --write-results)")
    args = p.parse_args(argv)
    load_average = common.load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        publish(repo, "digits", 1, common.digits_stand_in(), DIGITS_CONFIG)
        for r in range(args.rounds):
            for frozen in (True, False) if r % 2 == 0 else (False, True):
                print(f"[bench_loop_lag] round {r + 1}, frozen={frozen}", file=sys.stderr)
                rows.append((frozen, run_async(_arm(repo, frozen, args.duration))))
    argv = argv if argv is not None else sys.argv[1:]
    lines = [
        *common.section_header(HEAD, "benchmarks.bench_loop_lag", argv, load_average),
        "The demo MLP served in process (App), one-row v1 Predict at concurrency 32 from a subprocess, "
        f"{args.duration:g} s per arm, {args.rounds} interleaved rounds. Loop lag: how late a 10 ms timer on "
        "the server's event loop fired. Full collection: a generation-2 garbage collection (all on the loop).",
        "",
        "| startup objects | load | loop lag max ms | loop lag p99 ms | full collections | longest full collection ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for frozen, r in rows:
        label = "frozen (gc.freeze, the default)" if frozen else "collected (gc.unfreeze)"
        lines.append(
            f"| {label} | {r['load']} | {r['lag_max_ms']:.1f} | {r['lag_p99_ms']:.1f} | {r['full_collections']} | {r['full_max_ms']:.1f} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write_results or args.results:
        common.write_section(section, HEAD, args.results or common.RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
