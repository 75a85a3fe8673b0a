"""Before/after of code changes: the server at several git revisions (and the working tree),
measured in interleaved rounds on the same model, so that a machine whose speed drifts treats
every revision alike.

    python -m benchmarks.bench_ab 0951053 dcf5080 HEAD        # revisions, then the working tree
    python -m benchmarks.bench_ab HEAD~1 --rounds 7 --no-working-tree

Each revision is checked out (``git worktree add --detach``) into a temporary folder laid out as
the installed package (``ortserve`` -> ``server/``, ``ortserve.optimize`` -> ``optimize/``) and
served with that folder first on ``PYTHONPATH``, by this environment's interpreter and
dependencies. One round serves the demo MLP (its seeded stand-in, the demo's config.toml) from
each revision in turn: one-row v1 Predict at concurrency 32 from this process's closed loop, a
warm-up, then the measured window. Reported per revision: the median and every round of server
CPU per request (/proc, the server's process tree) and of throughput. A change whose medians
differ by less than the rounds' spread was not measured to matter.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import DIGITS, DIGITS_CONFIG, digits_stand_in, publish
from benchmarks.loadgen import run_async
from benchmarks.sweep import Load, point

ROOT = Path(__file__).resolve().parents[1]
WORKING = "working tree"


def _checkout(revision: str, into: Path) -> Path:
    """``revision`` importable as ``ortserve`` from the folder returned (put it on PYTHONPATH)."""
    tree = into / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
        check=True,
        capture_output=True,
    )
    (tree / "server" / "optimize").symlink_to(tree / "optimize")
    path = into / "path"
    path.mkdir()
    (path / "ortserve").symlink_to(tree / "server")
    return path


def _remove(checkout: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout.parent / "tree")],
        capture_output=True,
    )


def measure(revisions: list[str], rounds: int, load: Load, log=print) -> dict[str, list[tuple[float, float]]]:
    """(req/s, server CPU µs per request) per round, per revision."""
    from ortserve.testing import ServerProcess

    results: dict[str, list[tuple[float, float]]] = {r: [] for r in revisions}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        publish(repo, "digits", 1, digits_stand_in(), DIGITS_CONFIG)
        paths: dict[str, str] = {}
        try:
            for i, revision in enumerate(revisions):
                if revision == WORKING:
                    paths[revision] = ""
                else:
                    (root / str(i)).mkdir()
                    paths[revision] = str(_checkout(revision, root / str(i)))
            for n in range(rounds):
                for revision in revisions:
                    server = ServerProcess(repo, env={"PYTHONPATH": paths[revision]})
                    try:
                        warm = Load(load.concurrency, load.warmup, 0.5)
                        run_async(point(server.target, "v1", "digits", DIGITS, warm, server.proc.pid))
                        row = run_async(point(server.target, "v1", "digits", DIGITS, load, server.proc.pid))
                    finally:
                        server.stop()
                    results[revision].append((row.throughput_rps, row.cpu_us_per_request or 0.0))
                    log(
                        f"round {n + 1} {revision}: {row.throughput_rps:,.0f} req/s, "
                        f"{row.cpu_us_per_request or 0:.0f} µs CPU/request"
                    )
        finally:
            for path in paths.values():
                if path:
                    _remove(Path(path))
    return results


def table(results: dict[str, list[tuple[float, float]]]) -> str:
    rows = [
        "| revision | server CPU µs/request: median (rounds) | req/s: median (rounds) |",
        "|---|---|---|",
    ]
    for revision, runs in results.items():
        cpu = " / ".join(f"{c:.0f}" for _, c in runs)
        rps = " / ".join(f"{r:,.0f}" for r, _ in runs)
        rows.append(
            f"| {revision} | **{statistics.median(c for _, c in runs):.0f}** ({cpu}) | "
            f"{statistics.median(r for r, _ in runs):,.0f} ({rps}) |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_ab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("revisions", nargs="+", help="git revisions to compare (oldest first)")
    p.add_argument("--no-working-tree", action="store_true", help="leave the working tree out")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds per round (default 6)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args(argv)
    revisions: list[Any] = list(args.revisions) + ([] if args.no_working_tree else [WORKING])
    results = measure(revisions, args.rounds, Load(args.concurrency, args.duration, args.warmup))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
