"""The continuous-learning loop on the demo, end to end, timed: serve -> drifted traffic -> feedback ->
retrain -> canary -> automatic promotion (README "Continuous learning").

    python -m benchmarks.learning_loop                    # prints the timings
    python -m benchmarks.learning_loop --write-results    # + benchmarks/RESULTS.md

1. ``python -m ortserve.optimize.demo`` publishes digits version 1; the server starts with the payload log
   on (every request), feedback, and a repository scan every second.
2. The world drifts: the digits arrive shifted one pixel to the right (version 1 falls from 97% to about
   50% correct). Clients send ``--rows`` of them and, later, the true labels (Feedback).
3. ``ortserve-optimize retrain --canary`` reads the payload log and its feedback, fine-tunes version 1 on
   them (with the original training data replayed), checks it against version 1 on a held-out slice,
   publishes it as version 2 with its lineage and starts a rollout of it.
4. Drifted traffic with feedback goes on; the judge compares the arms (errors, latency over the SLO,
   wrong answers) at each step, and the controller promotes version 2 when every step has passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from ortserve.admin_client import AdminClient
from ortserve.client import AsyncClient
from ortserve.optimize.demo import build
from ortserve.optimize.examples.digits import digits_split
from ortserve.repository.payload import labelled
from ortserve.testing import ServerProcess

HEAD = "## Continuous learning: the demo loop (learning_loop)"
SPEC = """\
steps = [10, 50]
step_seconds = 5
step_requests = 60
checks = ["errors", "latency", "accuracy"]
latency_slo_ms = 250
"""


def shifted(x: np.ndarray) -> np.ndarray:
    """The drift: each 8x8 digit moved one pixel to the right (the left column empty)."""
    img = x.reshape(-1, 8, 8)
    out = np.zeros_like(img)
    out[:, :, 1:] = img[:, :, :7]
    return out.reshape(-1, 64).astype(np.float32)


async def traffic(target: str, x: np.ndarray, y: np.ndarray, rows: int, seed: int) -> float:
    """One row per request, each followed by its feedback; the share answered correctly."""
    rng = np.random.default_rng(seed)
    right = 0
    async with AsyncClient(target) as client:
        for i in rng.integers(0, len(x), rows):
            r = await client.predict(
                "digits", {"input": x[i : i + 1]}, targeting_key=f"user-{rng.integers(1e9)}"
            )
            fb = await client.feedback(r.request_id, labels=[int(y[i])])
            right += fb.correct
    return right / rows


def loop(work: Path, rows: int, epochs: int) -> dict:
    repo, payloads, timings = work / "models", work / "payloads", {}
    t0 = time.perf_counter()
    build(repo, quiet=True)
    timings["build version 1 (demo)"] = time.perf_counter() - t0
    x_train, x_test, y_train, y_test = digits_split()
    np.savez(work / "replay.npz", input=x_train, labels=y_train)
    (work / "rollout.toml").write_text(SPEC)
    t_serve = time.perf_counter()
    args = ("--payload-log", str(payloads), "--payload-log-rate", "1", "--poll-interval", "1")
    server = ServerProcess(repo, *args, "--rollout-interval", "0.5", "--drift-sample-rate", "0")
    try:
        timings["serve (start to ready)"] = time.perf_counter() - t_serve
        t = time.perf_counter()
        drifted_acc = asyncio.run(traffic(server.target, shifted(x_train), y_train, rows, 1))
        for _ in range(100):  # the payload log's writer thread has written the feedback records
            if sum(1 for _ in labelled(payloads, "digits")) >= rows:
                break
            time.sleep(0.1)
        timings["drifted traffic + feedback"] = time.perf_counter() - t
        t = time.perf_counter()
        retrain = [
            sys.executable, "-m", "ortserve.optimize", "retrain", "--repo", str(repo), "--model", "digits",
            "--payload-log", str(payloads), "--source", "ortserve.optimize.examples.digits:mlp",
            "--replay", str(work / "replay.npz"), "--epochs", str(epochs), "--out", str(work / "retrain"), "--threads", "1",
            "--canary", "--server", server.target, "--rollout-spec", str(work / "rollout.toml"), "--quiet",
        ]  # fmt: skip
        done = subprocess.run(retrain, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"retrain failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        timings["retrain + publish + canary start"] = time.perf_counter() - t
        t = time.perf_counter()
        with AdminClient(server.target) as admin:
            state = ""
            for seed in range(2, 1000):
                asyncio.run(traffic(server.target, shifted(x_test), y_test, 40, seed))
                state = admin.get_rollout("digits").state
                if state in ("promoted", "rolled-back", "aborted"):
                    break
            report = admin.rollout_report("digits")
        timings["canary to automatic promotion"] = time.perf_counter() - t
        if state != "promoted":
            raise SystemExit(f"the rollout ended {state}: {report['decision']}")
        total = time.perf_counter() - t_serve
    finally:
        server.stop()
    arms = {v["arm"]: v for v in report["variants"]}
    return {
        "timings": timings,
        "total": total,
        "rows": rows,
        "drifted_online_accuracy": drifted_acc,
        "retrain": summary,
        "canary_accuracy": {a: arms[a]["accuracy"] for a in arms},
        "canary_requests": {a: arms[a]["requests"] for a in arms},
        "decision": report["decision"],
        "transitions": len(report["transitions"]),
    }


def markdown(r: dict, command: str) -> str:
    acc = r["canary_accuracy"]
    load = os.getloadavg()
    out = [
        HEAD,
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}; {common.machine()}; load average {load[0]:.1f} at the end). "
        f"Digits shifted one pixel: version 1 answered {r['drifted_online_accuracy']:.0%} of {r['rows']} drifted "
        f"requests correctly. Retrain: {r['retrain']['rows']['train']} training rows from the payload log "
        f"(+ {r['retrain']['rows']['replay']} replayed), holdout accuracy {r['retrain']['holdout_accuracy']['parent']:.1%}"
        f" (version {r['retrain']['parent']}) -> {r['retrain']['holdout_accuracy']['candidate']:.1%} "
        f"(version {r['retrain']['version']}). Canary online accuracy: baseline {acc['baseline']['rate']:.1%}, "
        f"candidate {acc['candidate']['rate']:.1%}; {r['decision']}.",
        "",
        "| phase | wall time (s) |",
        "|---|---:|",
    ]
    out += [f"| {name} | {seconds:.1f} |" for name, seconds in r["timings"].items()]
    out.append(f"| **serve -> automatic promotion** | **{r['total']:.1f}** |")
    out += [
        "",
        "Most of the loop is retraining: PyTorch's import, 30 epochs of the 64-unit MLP (one thread), and the "
        "optimize pipeline's export, validation against version 1 on the held-out slice and benchmark. The canary "
        "phase is set by the steps' minimums (10% then 50%, each at least 5 s and 60 candidate requests) and the "
        "client's pace (one request and its feedback at a time).",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rows", type=int, default=1000, help="drifted requests before retraining")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--write-results", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="learning-loop-") as tmp:
        result = loop(Path(tmp), args.rows, args.epochs)
    command = common.command("benchmarks.learning_loop", argv if argv is not None else sys.argv[1:])
    section = markdown(result, command)
    print(json.dumps(result, indent=2, default=str))
    print(section)
    if args.write_results:
        common.write_section(section, HEAD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
