"""Adaptive batching against the raw limit, in one run: one-row requests at concurrency 32 (closed
loop, ortserve v1 Predict) to the compute-bound CNN at 1 and 2 ONNX Runtime threads and to the
demo MLP, with ``[batching] adaptive`` on (the default) and off (the batch fills up to
``max_batch_size`` or the window ends, as before), the two arms interleaved round by round.

    python -m benchmarks.bench_batching                   # prints the section
    python -m benchmarks.bench_batching --write-results   # + benchmarks/RESULTS.md
    python -m benchmarks.bench_batching --smoke           # seconds: checks the harness

The limit is raw ONNX Runtime in this process: one session with the same threads, back to back
at its best batch size (the best of a pass before and one after the servers ran). Server/raw is
rows per second answered over that. Server CPU per request: the server's process tree CPU
seconds (/proc) over the requests answered. Mean batch: rows over batches run in the window,
from the V2 statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import CNN, DIGITS, DIGITS_CONFIG, ModelSpec, cnn_config, publish, small_cnn
from benchmarks.loadgen import run_async
from benchmarks.sweep import Load, point

HEAD = "## Adaptive batching"
ARMS = ("adaptive", "fixed window")


@dataclass
class Arm:
    model: str
    threads: int
    arm: str
    raw_rps: float
    rps: list[float]
    cpu_us: list[float]
    p99_ms: list[float]
    loop_us: list[float] = field(default_factory=list)  # the event loop thread's CPU per request

    def row(self) -> str:
        rps = sum(self.rps) / len(self.rps)
        cpu = sum(self.cpu_us) / len(self.cpu_us)
        p99 = sum(self.p99_ms) / len(self.p99_ms)
        runs = " / ".join(f"{x:,.0f}" for x in self.rps)
        # digits is overhead-bound: raw ONNX Runtime's rows/s is no limit a server can approach
        raw, ratio = (
            ("-", "-") if not self.raw_rps else (f"{self.raw_rps:,.0f}", f"**{rps / self.raw_rps:.2f}x**")
        )
        loop = sum(self.loop_us) / len(self.loop_us) if self.loop_us else 0.0
        # the rest of the server's CPU: ONNX Runtime's threads (and a few small ones), in cores
        rest = f"{cpu - loop:.0f} ({(cpu - loop) * rps / 1e6:.2f})" if self.loop_us else "-"
        return (
            f"| {self.model} | {self.threads} | {self.arm} | {rps:,.0f} ({runs}) | {raw} | {ratio} | {p99:.1f} "
            f"| {cpu:.0f} | {loop:.0f} | {rest} |"
        )


def _config(base: str, adaptive: bool) -> str:
    return base.replace("[batching]\n", f"[batching]\nadaptive = {'true' if adaptive else 'false'}\n", 1)


def _raw(path: Path, spec: ModelSpec, threads: int, seconds: float) -> float:
    per_batch = common.raw_onnxruntime(path, spec.inputs, spec.raw_batches, seconds, threads=threads)
    return max(per_batch.values())


def run(load: Load, rounds: int, smoke: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from ortserve.testing import ServerProcess

    cases: list[tuple[ModelSpec, int, str, Any]] = [
        (CNN, 1, cnn_config(1), small_cnn()),
        (CNN, 2, cnn_config(2), small_cnn()),
        (DIGITS, 1, DIGITS_CONFIG, common.digits_stand_in()),
    ]
    if smoke:
        cases = cases[:1]
    arms: list[Arm] = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, threads, base, model in cases:
            repos = {}
            for arm in ARMS:
                repos[arm] = Path(tmp) / f"{spec.name}-{threads}-{arm.replace(' ', '-')}"
                publish(repos[arm], spec.name, 1, model, _config(base, arm == "adaptive"))
            path = repos[ARMS[0]] / spec.name / "1" / "model.onnx"
            limit = spec is CNN  # digits is overhead-bound: compared arm against arm only
            if limit:
                log(f"raw ONNX Runtime: {spec.name}, {threads} thread(s)")
            raw_before = _raw(path, spec, threads, load.duration / 4) if limit else 0.0
            results = {arm: Arm(spec.name, threads, arm, 0.0, [], [], []) for arm in ARMS}
            for r in range(rounds):
                for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                    log(f"{spec.name}, {threads} thread(s), {arm}, round {r + 1}")
                    server = ServerProcess(repos[arm])
                    try:
                        row = run_async(point(server.target, "v1", spec.name, spec, load, server.proc.pid))
                    finally:
                        server.stop()
                    results[arm].rps.append(row.throughput_rps)
                    results[arm].cpu_us.append(row.cpu_us_per_request or 0.0)
                    results[arm].p99_ms.append(row.p99_ms or 0.0)
                    results[arm].loop_us.append(row.loop_cpu_us_per_request or 0.0)
            raw = max(raw_before, _raw(path, spec, threads, load.duration / 4)) if limit else 0.0
            for a in results.values():
                a.raw_rps = raw
                arms.append(a)
    return {"arms": [asdict(a) for a in arms], "machine": common.machine(), "versions": common.versions()}


def markdown(results: dict[str, Any]) -> str:
    rows = [Arm(**a).row() for a in results["arms"]]
    return "\n".join(
        [
            HEAD,
            "",
            f"Machine: {results['machine']}. Load average before: {results['load_average']} (1, 5, 15 min). "
            f"Date: {results['date']}.",
            f"Command: `{results['command']}`.",
            "",
            "One-row v1 Predict requests at concurrency 32 (closed loop, the same client), each arm "
            "its own server, arms interleaved round by round (each round's throughput in brackets). "
            "Raw: one in-process ONNX Runtime session with the same threads at its best batch size "
            "(the CNN only: the demo MLP is overhead-bound, its arms are compared with each other). Adaptive: "
            "`[batching] adaptive = true` (batches sized from the learnt cost per batch size and the "
            "arrival rate); fixed window: `adaptive = false`, the default (a batch waits for max_batch_size rows "
            "or the window's end). Targets: CNN server/raw >= 0.9x at 1 thread, >= 0.8x at 2; no "
            "loss on digits. Server CPU per request is split into the event loop's thread (gRPC, decoding, "
            "batching, encoding) and the rest (ONNX Runtime's threads, a few small ones), the latter also in "
            "cores (CPU seconds per second): at 1 ORT thread, how busy the session was.",
            "",
            "| model | ORT threads | batching | req/s (rounds) | raw rows/s | server/raw | p99 ms "
            "| server CPU us/req | of it, event loop | of it, the rest (cores) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_batching",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per point (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per arm, interleaved (default 2)")
    p.add_argument("--smoke", action="store_true", help="seconds: the CNN at 1 thread, one round")
    p.add_argument("--write-results", action="store_true", help="update benchmarks/RESULTS.md")
    p.add_argument("--results", type=Path, help="the RESULTS.md to update (implies --write-results)")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args(argv)
    load = Load(32, 1.0 if args.smoke else args.duration, 0.3 if args.smoke else 2.0)

    def log(message: str) -> None:
        print(f"[bench_batching {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    load_average = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results = run(load, 1 if args.smoke else args.rounds, args.smoke, log)
    results.update(
        load_average=load_average,
        date=time.strftime("%Y-%m-%d"),
        command=common.command("benchmarks.bench_batching", argv if argv is not None else sys.argv[1:]),
    )
    section = markdown(results)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.write_results or args.results:
        common.write_section(section, HEAD, args.results or common.RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
