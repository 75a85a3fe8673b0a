"""When ``--workers`` pays off: the demo MLP (overhead-bound: one Python process saturates a core)
served by one process and by ``--workers 2``, with the load generator and the server pinned to
separate cores (taskset semantics: ``os.sched_setaffinity`` before the server starts, inherited by
its threads and workers) and unpinned (both sharing the machine's cores), arms interleaved.

    python -m benchmarks.bench_workers                   # prints the section
    python -m benchmarks.bench_workers --write-results   # + benchmarks/RESULTS.md

One-row v1 Predict requests at concurrency 32 from this process's closed loop; server CPU per
request from /proc over the requests answered.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import DIGITS, DIGITS_CONFIG, publish
from benchmarks.loadgen import run_async
from benchmarks.sweep import Load, point

HEAD = "## --workers: when a second process pays off (bench_workers)"


def _arm(repo: Path, workers: int, pinned: bool, load: Load) -> dict[str, Any]:
    from ortserve.testing import ServerProcess

    cores = sorted(os.sched_getaffinity(0))
    if pinned and len(cores) < 2:
        return {"skipped": "fewer than 2 cores"}
    mine = set(cores)
    try:
        if pinned:
            os.sched_setaffinity(0, {cores[-1]})  # the server inherits the last core alone
        server = ServerProcess(repo, "--workers", str(workers)) if workers > 1 else ServerProcess(repo)
    finally:
        os.sched_setaffinity(0, {cores[0]} if pinned else mine)  # the client: the first core
    try:
        row = run_async(point(server.target, "v1", "digits", DIGITS, load, server.proc.pid))
    finally:
        server.stop()
        os.sched_setaffinity(0, mine)
    return {"rps": row.throughput_rps, "p99_ms": row.p99_ms, "cpu_us": row.cpu_us_per_request or 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--write-results", action="store_true")
    p.add_argument("--results", type=Path, help="the RESULTS.md to update (implies --write-results)")
    args = p.parse_args(argv)
    load = Load(32, args.duration, 2.0)
    load_average = common.load_average()
    arms = [(pinned, workers) for pinned in (True, False) for workers in (1, 2)]
    figures: dict[tuple[bool, int], list[dict[str, Any]]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        publish(repo, "digits", 1, common.digits_stand_in(), DIGITS_CONFIG)
        for r in range(args.rounds):
            for pinned, workers in arms if r % 2 == 0 else arms[::-1]:
                print(f"[bench_workers] round {r + 1}: pinned={pinned} workers={workers}", file=sys.stderr)
                figures[(pinned, workers)].append(_arm(repo, workers, pinned, load))
    argv = argv if argv is not None else sys.argv[1:]
    lines = [
        *common.section_header(HEAD, "benchmarks.bench_workers", argv, load_average),
        "The demo MLP (untrained stand-in, the demo's config.toml), one-row v1 Predict at concurrency 32, "
        f"{args.duration:g} s per arm after 2 s of warm-up, {args.rounds} interleaved rounds (mean; each round's "
        "req/s in brackets). Pinned: the load generator on one core, the server (all its processes and "
        "threads) on the other. Shared: both on both cores.",
        "",
        "| layout | server | req/s (rounds) | p99 ms | server CPU µs/req |",
        "|---|---|---|---:|---:|",
    ]
    for pinned, workers in arms:
        runs = [f for f in figures[(pinned, workers)] if "skipped" not in f]
        layout = "pinned (client core 0, server core 1)" if pinned else "shared (2 cores)"
        server = "one process" if workers == 1 else "--workers 2"
        if not runs:
            lines.append(f"| {layout} | {server} | skipped | | |")
            continue
        mean = {k: sum(f[k] for f in runs) / len(runs) for k in ("rps", "p99_ms", "cpu_us")}
        each = " / ".join(f"{f['rps']:,.0f}" for f in runs)
        lines.append(
            f"| {layout} | {server} | {mean['rps']:,.0f} ({each}) | {mean['p99_ms']:.1f} | {mean['cpu_us']:.0f} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write_results or args.results:
        common.write_section(section, HEAD, args.results or common.RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
