"""The canary judge (``ortserve.rollout.judge.SequentialTest``) in simulation: its false-alarm rate when
the candidate is exactly as good as the baseline, checked after every bad event, and how many bad events
a 2x or 3x worse candidate takes to be caught, at 5% and 25% of the traffic.

    python -m benchmarks.judge_sim                    # prints the table
    python -m benchmarks.judge_sim --write-results    # + benchmarks/RESULTS.md

A candidate ``r`` times worse has ``r`` times the baseline's bad events per request, so a bad event
lands on it with probability ``r s / (r s + 1 - s)`` at traffic share ``s``. Each run draws events one
by one (up to ``--events``) and the test looks after each; a run "detects" at its first rejection.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import common
from ortserve.rollout.judge import THETAS, SequentialTest

HEAD = "## Canary judge: false alarms and detection delay (judge_sim)"


def first_rejections(
    share: float, ratio: float, runs: int, events: int, alpha: float, seed: int, quiet: int = 0
) -> np.ndarray:
    """For each run, the 1-based index of the bad event at which the test first rejects (0: never).

    Vectorised over runs; the same arithmetic as SequentialTest.observe one event at a time. ``quiet``:
    the rollout ``Judge`` also runs that many other checks that see no bad events (their e-values stay 1),
    so it rejects when (E + quiet) / (1 + quiet) >= 1 / alpha."""
    rng = np.random.default_rng(seed)
    q_true = ratio * share / (ratio * share + 1 - share)
    on_candidate = rng.random((runs, events)) < q_true
    thetas = np.asarray(THETAS)
    q = thetas * share / (thetas * share + 1 - share)
    up, down = np.log(q / share), np.log((1 - q) / (1 - share))  # per theta
    hits = np.cumsum(on_candidate, axis=1)  # candidate events so far
    n = np.arange(1, events + 1)
    log_lr = hits[..., None] * up + (n - hits)[..., None] * down  # runs x events x thetas
    top = log_lr.max(axis=2)
    log_e = top + np.log(np.exp(log_lr - top[..., None]).mean(axis=2))
    reject = log_e >= np.log((1 + quiet) / alpha - quiet)
    first = np.where(reject.any(axis=1), reject.argmax(axis=1) + 1, 0)
    return first


def check_against_the_class(share: float, seed: int = 1) -> None:
    """The vectorised simulation agrees with SequentialTest event by event (a guard against drift)."""
    first = first_rejections(share, 3.0, 1, 400, 0.05, seed)[0]
    rng = np.random.default_rng(seed)
    q_true = 3.0 * share / (3.0 * share + 1 - share)
    events = rng.random((1, 400))[0] < q_true
    test = SequentialTest(alpha=0.05)
    at = 0
    for i, cand in enumerate(events, 1):
        test.observe(int(cand), int(not cand), share)
        if test.rejected:
            at = i
            break
    assert at == first, (at, first)


def table(runs: int, events: int, alpha: float) -> list[dict]:
    rows = []
    for share in (0.05, 0.25):
        check_against_the_class(share)
        for ratio in (1.0, 2.0, 3.0):
            seed = int(share * 1000 + ratio * 10)
            first = np.concatenate(  # in chunks of 500 runs: runs x events x thetas floats at a time
                [
                    first_rejections(share, ratio, min(500, runs - i), events, alpha, seed + i)
                    for i in range(0, runs, 500)
                ]
            )
            caught = first[first > 0]
            judged = np.concatenate(  # the rollout judge: errors, latency and accuracy, only one moving
                [
                    first_rejections(share, ratio, min(500, runs - i), events, alpha, seed + i, quiet=2)
                    for i in range(0, runs, 500)
                ]
            )
            judged = judged[judged > 0]
            rows.append(
                {
                    "share": share,
                    "ratio": ratio,
                    "runs": runs,
                    "rejected": float((first > 0).mean()),
                    "median_events": float(np.median(caught)) if caught.size else None,
                    "p90_events": float(np.percentile(caught, 90)) if caught.size else None,
                    "judge_rejected": float(judged.size / runs),
                    "judge_median": float(np.median(judged)) if judged.size else None,
                }
            )
    return rows


def markdown(rows: list[dict], runs: int, events: int, alpha: float, command: str, seconds: float) -> str:
    out = [
        HEAD,
        "",
        f"`{command}` ({seconds:.0f} s, {time.strftime('%Y-%m-%d')}): {runs:,} simulated runs per row, up to "
        f"{events:,} bad events each, the test looking after every event, alpha = {alpha}. "
        "Events: bad events of both arms together (errors, SLO-slow requests, wrong answers). The last two "
        "columns are the rollout judge as it runs by default (errors, latency and accuracy, rejecting on the "
        "mean of their e-values) when only this check sees bad events.",
        "",
        "| candidate share | candidate vs baseline | runs rejected | median events to detect | p90 events "
        "| judge of 3 checks: rejected | median events |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kind = "as good (false alarms)" if r["ratio"] == 1.0 else f"{r['ratio']:g}x worse"
        med = f"{r['median_events']:,.0f}" if r["median_events"] is not None else "–"
        p90 = f"{r['p90_events']:,.0f}" if r["p90_events"] is not None else "–"
        jm = f"{r['judge_median']:,.0f}" if r["judge_median"] is not None else "–"
        out.append(
            f"| {r['share']:.0%} | {kind} | {r['rejected']:.2%} | {med} | {p90} | {r['judge_rejected']:.2%} | {jm} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.judge_sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--runs", type=int, default=4000)
    p.add_argument("--events", type=int, default=3000)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--write-results", action="store_true")
    args = p.parse_args(argv)
    started = time.time()
    rows = table(args.runs, args.events, args.alpha)
    command = common.command("benchmarks.judge_sim", argv if argv is not None else sys.argv[1:])
    section = markdown(rows, args.runs, args.events, args.alpha, command, time.time() - started)
    print(section)
    if args.write_results:
        common.write_section(section, HEAD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
