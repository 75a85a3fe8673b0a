"""Latency and throughput of ONNX models at several batch sizes, measured side by side.

The models are timed in interleaved rounds (an untimed run, then ~50 ms of timed runs of each in turn) so that a
noisy neighbour on a shared machine slows them all alike instead of whichever happened to run at the time. The
untimed run absorbs the previous model's thread pool still spin-waiting (ONNX Runtime's default, kept because
the server runs with it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.dtypes import TensorSpec
from ortserve.optimize.context import Progress
from ortserve.optimize.cpu import cpu_info
from ortserve.optimize.specs import synthetic_inputs

__all__ = ["benchmark", "file_size"]


def file_size(path: Path) -> int:
    """The model file plus any external-data file beside it."""
    data = Path(str(path) + ".data")
    return Path(path).stat().st_size + (data.stat().st_size if data.exists() else 0)


def benchmark(
    models: dict[str, Path],
    specs: list[TensorSpec],
    dims: dict[str, int],
    batch_sizes: list[int],
    threads: int = 0,
    seconds: float = 1.0,
    seed: int = 0,
    log: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """``{model: {"size_bytes", "threads", "batches": {"8": {"p50_ms", "p90_ms", "p99_ms", "mean_ms",
    "throughput", "runs"}}}}``; ``seconds`` is the time budget per model and batch size."""
    import onnxruntime as ort

    log = log or Progress(quiet=True)
    threads = threads or int(cpu_info()["cores"])
    sessions = {}
    for name, path in models.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    result: dict[str, dict[str, Any]] = {
        name: {"size_bytes": file_size(path), "threads": threads, "batches": {}}
        for name, path in models.items()
    }
    task = log.task(
        f"benchmark ({len(models)} models, batch sizes {', '.join(map(str, batch_sizes))})", len(batch_sizes)
    )
    with task:
        for n, bs in enumerate(batch_sizes):

            def done(fraction: float, n: int = n) -> None:
                task.update(n + fraction)

            _batch_size(sessions, result, specs, dims, bs, seconds, seed, log, done)
    return result


def _batch_size(
    sessions: dict[str, Any],
    result: dict[str, dict[str, Any]],
    specs: list[TensorSpec],
    dims: dict[str, int],
    bs: int,
    seconds: float,
    seed: int,
    log: Progress,
    done: Callable[[float], None],
) -> None:
    """Time every model at batch size ``bs``; ``done(fraction)`` as the time budget runs."""
    feed = synthetic_inputs(specs, bs, dims, seed).inputs
    times: dict[str, list[float]] = {name: [] for name in sessions}
    block: dict[str, int] = {}
    for name, sess in sessions.items():  # warm-up (allocations, thread pool, caches); sizes the blocks
        sess.run(None, feed)
        t = time.perf_counter()
        sess.run(None, feed)
        # ~50 ms of timed runs per model per round: long enough that switching costs little
        block[name] = max(3, min(50, int(0.05 / max(time.perf_counter() - t, 1e-6))))
    budget = seconds * len(sessions)
    start = time.perf_counter()
    rounds = 0
    while True:
        for name, sess in sessions.items():
            # Untimed: the previous model's thread pool stops spinning, caches and threads come back here.
            sess.run(None, feed)
            for _ in range(block[name]):
                t = time.perf_counter()
                sess.run(None, feed)
                times[name].append(time.perf_counter() - t)
        rounds += 1
        done(min(1.0, max(rounds / 200, (time.perf_counter() - start) / budget if budget else 1.0)))
        if rounds >= 3 and (time.perf_counter() - start >= budget or rounds >= 200):
            break
    for name, ts in times.items():
        a = np.array(ts) * 1000
        result[name]["batches"][str(bs)] = {
            "p50_ms": float(np.percentile(a, 50)),
            "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()),
            "throughput": float(bs / (a.mean() / 1000)),
            "runs": len(ts),
        }
    log(f"benchmark: batch {bs} done ({rounds} rounds)")
