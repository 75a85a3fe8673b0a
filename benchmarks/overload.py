"""The overload test of ``bench_compare.py``: open-loop Poisson arrivals at a multiple of the
server's measured capacity, with the server's memory sampled throughout and its recovery timed
after the load stops.

    result = run_async(overload(target, metrics_url, pid, "cnn", inputs, 64, Overload(duration_s=10)))
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np

from benchmarks.common import Inputs
from benchmarks.loadgen import (
    SHED,
    Recorder,
    batch_stats,
    closed_loop,
    open_loop,
    scrape_metrics,
    timeline,
    v2_sender,
)

__all__ = ["MIN_REQUESTS", "Overload", "RssSampler", "capacity_floor", "overload", "process_tree_rss"]

# The overload offers at least this many requests in its window, whatever the capacity measured.
MIN_REQUESTS = 10


@dataclass(frozen=True)
class Overload:
    duration_s: float = 10.0
    capacity_s: float = 5.0  # closed loop that measures the capacity the overload is a multiple of
    factor: float = 3.0
    queue_timeout_us: int = 50_000  # per-request queue limit (V2 ``timeout`` parameter)
    rows: int = 8  # rows per request: the model, not the generator, must be the limit

    def __post_init__(self) -> None:
        for name in ("duration_s", "capacity_s", "factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Overload.{name}: {getattr(self, name)}, expected > 0")


def capacity_floor(cfg: Overload) -> float:
    """The least capacity (req/s) the overload assumes, whatever was measured.

    On a busy machine the closed loop that measures the capacity can finish no request inside its
    short window and measure 0 req/s; a multiple of that is no load at all (and not a rate Poisson
    arrivals can have). The floor is 1 req/s, or more so that the open loop still offers
    ``MIN_REQUESTS`` requests in its window. When it is used, the result says so
    (``capacity_floored``) next to the figure actually measured."""
    return max(1.0, MIN_REQUESTS / (cfg.factor * cfg.duration_s))


def process_tree_rss(pid: int) -> float:
    """Resident memory of a process and its children, in MiB (forked workers share pages, so this
    over-counts them; it is the figure to watch for growth, not an absolute)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):  # a worker that exits between the two calls
            total += p.memory_info().rss
    return total / 2**20


class RssSampler:
    """Samples a process tree's RSS every ``interval`` seconds on a thread (off the event loop)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), process_tree_rss(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def overload(
    target: str, metrics_url: str, pid: int, model: str, inputs: Inputs, max_batch_size: int, cfg: Overload
) -> dict[str, Any]:
    """Open-loop Poisson load at ``cfg.factor`` x the server's capacity (at least
    ``capacity_floor(cfg)``) over V2, each request allowed
    ``queue_timeout_us`` in the server's queue; from the moment the load stops, one request at a
    time (without the queue limit) until one is answered within 2x the unloaded p99: the recovery.

    Requests carry ``cfg.rows`` rows so that the model is the bottleneck: with one-row
    requests on 2 shared cores, 3x the capacity is more gRPC calls than the load generator and the
    server's gRPC layer can carry, and the test would measure them rather than shedding. The
    capacity is measured at the same request shape just before (closed loop, enough requests in
    flight to fill the largest batch twice)."""
    import grpc

    params = {"timeout": cfg.queue_timeout_us}
    rows = cfg.rows
    async with grpc.aio.insecure_channel(target) as channel:
        plain = v2_sender(channel, model, inputs(rows), timeout=30)
        concurrency = max(2, 2 * max_batch_size // rows)
        cap = await closed_loop(plain, concurrency, cfg.capacity_s, min(1.0, cfg.capacity_s))
        floor = capacity_floor(cfg)
        capacity_rps = max(cap.throughput_rps, floor)
        rate = cfg.factor * capacity_rps
        send = v2_sender(channel, model, inputs(rows), timeout=10, parameters=params)
        unloaded = []
        for _ in range(20):  # without the queue limit: this is the baseline the recovery is judged by
            t0 = time.perf_counter()
            await plain(0)
            unloaded.append(time.perf_counter() - t0)
        unloaded_p99 = float(np.percentile(unloaded, 99))
        threshold = max(2 * unloaded_p99, unloaded_p99 + 0.005)
        rec = Recorder()
        before = scrape_metrics(metrics_url)
        warmup = min(1.0, cfg.duration_s / 4)
        start = time.perf_counter()
        stop_at = start + warmup + cfg.duration_s

        async def recovery() -> float | None:
            await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
            while time.perf_counter() - stop_at < 5.0:
                t0 = time.perf_counter()
                try:
                    await plain(0)
                    if time.perf_counter() - t0 <= threshold:
                        return time.perf_counter() - stop_at
                except grpc.RpcError:
                    pass
                await asyncio.sleep(0.01)
            return None

        with RssSampler(pid) as rss:
            probe_task = asyncio.ensure_future(recovery())
            result = await open_loop(
                send, rate, cfg.duration_s, warmup, recorder=rec, drain_timeout=5.0, max_in_flight=2000
            )
            recovered_s = await probe_task
            await asyncio.sleep(0.3)
        after = scrape_metrics(metrics_url)
    stats = batch_stats(before, after, model)
    bound_s = 2 * (cfg.queue_timeout_us / 1e6 + stats["mean_compute_s"])
    samples = [(t - start, mb) for t, mb in rss.samples]
    load_rss = [mb for t, mb in samples if warmup <= t <= warmup + cfg.duration_s]
    # Growth = the last quarter of the load window against its second quarter: the first quarter is
    # the server reaching its steady state (ONNX Runtime's arena at full batches, a full queue),
    # which is bounded; what must not happen is growth that goes on.
    q = max(1, len(load_rss) // 4)
    growth = (
        float(np.mean(load_rss[-q:])) - float(np.mean(load_rss[q : 2 * q] or load_rss[:q]))
        if load_rss
        else 0.0
    )
    rss_before = samples[0][1] if samples else 0.0
    shed = {k: v for k, v in result.errors.items() if k in SHED}
    return {
        "model": model,
        "rows": rows,
        "capacity_rps": capacity_rps,  # what the overload is a multiple of (measured, or the floor)
        "capacity_measured_rps": cap.throughput_rps,
        "capacity_floor_rps": floor,
        "capacity_floored": cap.throughput_rps < floor,
        "capacity_s": cfg.capacity_s,
        "capacity_concurrency": concurrency,
        "capacity_p99_ms": cap.p99_ms,
        "offered_rps": rate,
        "factor": cfg.factor,
        "duration_s": cfg.duration_s,
        "queue_timeout_ms": cfg.queue_timeout_us / 1000,
        "result": asdict(result),
        "sent_rps": result.sent / cfg.duration_s,
        "goodput_fraction": result.throughput_rps / capacity_rps,
        "shed": shed,
        "shed_fraction": sum(shed.values()) / max(1, result.sent),
        "other_errors": {k: v for k, v in result.errors.items() if k not in shed},
        "admitted_p99_ms": result.p99_ms,
        "mean_compute_ms": stats["mean_compute_s"] * 1000,
        "mean_batch": stats["mean_batch"],
        "bound_ms": bound_s * 1000,
        "server_queue_ms": stats["mean_queue_s"] * 1000,
        "server_time_ms": stats["mean_server_s"] * 1000,
        "rss_before_mb": rss_before,
        "rss_peak_mb": max((mb for _, mb in samples), default=0.0),
        "rss_growth_mb": growth,
        "rss_samples": samples,
        "unloaded_p99_ms": unloaded_p99 * 1000,
        "recovery_threshold_ms": threshold * 1000,
        "recovered_s": recovered_s,
        "timeline": timeline(rec, start, bin_s=0.1 if cfg.duration_s >= 2 else 0.05),
        "warmup_s": warmup,
    }
