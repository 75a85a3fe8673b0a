"""The two ways of applying load: a closed loop (``concurrency`` workers back to back) and an open
loop (Poisson arrivals at a mean rate, latency from the scheduled start). Both record every request
in a ``Recorder`` and summarize the measured window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import numpy as np

from benchmarks.loadgen.results import LoadResult, Recorder, error_code

__all__ = ["Sender", "closed_loop", "open_loop", "run_async"]

# A sender sends one request and returns a label of what served it (version[/variant]) or None.
Sender = Callable[[int], Awaitable[str | None]]
T = TypeVar("T")


async def _call(send: Sender, i: int, start: float, rec: Recorder) -> None:
    sent = time.perf_counter()
    try:
        served = await send(i)
        code = "OK"
    except asyncio.CancelledError:  # by the generator itself (open loop: still in flight after the drain)
        rec.add(start, time.perf_counter(), "CLIENT_CANCELLED", None, sent)
        raise
    except Exception as e:  # any failure is counted by its status code, and the load goes on
        served, code = None, error_code(e)
    rec.add(start, time.perf_counter(), code, served, sent)


async def closed_loop(
    send: Sender,
    concurrency: int,
    duration: float,
    warmup: float = 1.0,
    *,
    max_requests: int = 2_000_000,
    recorder: Recorder | None = None,
) -> LoadResult:
    """Run ``concurrency`` workers calling ``send(worker_index)`` back to back."""
    rec = recorder if recorder is not None else Recorder()
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + duration

    async def worker(i: int) -> None:
        while len(rec) < max_requests:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            await _call(send, i, t0, rec)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    # A closed loop only counts requests that also finished in the window, so that the slow tail
    # of the last round does not stretch the measured time.
    return rec.summarize(measure_from, end, duration, concurrency=concurrency, mode="closed", finished_by=end)


async def open_loop(
    send: Sender,
    rate: float,
    duration: float,
    warmup: float = 1.0,
    *,
    seed: int = 0,
    max_in_flight: int = 10_000,
    max_requests: int = 2_000_000,
    drain_timeout: float = 10.0,
    recorder: Recorder | None = None,
) -> LoadResult:
    """Start requests at Poisson arrival times with mean ``rate`` per second, for ``warmup + duration``
    seconds; then wait up to ``drain_timeout`` for the ones in flight (the rest are cancelled).

    An arrival that finds ``max_in_flight`` requests outstanding is not sent and counts as the
    error ``CLIENT_BACKLOG`` (the generator's own bound, so that it cannot run away)."""
    if rate <= 0:
        raise ValueError(f"rate: {rate}, expected > 0")
    rec = recorder if recorder is not None else Recorder()
    total = warmup + duration
    n = min(max_requests, int(rate * total * 1.5) + 100)
    offsets = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    offsets = offsets[offsets < total]
    start = time.perf_counter()
    tasks: set[asyncio.Task] = set()
    peak = 0
    max_lag = 0.0
    measure_from = start + warmup
    for i, offset in enumerate(offsets.tolist()):
        at = start + offset
        delay = at - time.perf_counter()
        if delay > 0.0005:  # sleep only when it is worth it; late arrivals go at once
            await asyncio.sleep(delay)
        lag = time.perf_counter() - at
        if at >= measure_from and lag > max_lag:
            max_lag = lag
        if len(tasks) >= max_in_flight:
            rec.add(at, at, "CLIENT_BACKLOG", None)
            continue
        task = asyncio.ensure_future(_call(send, i, at, rec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        peak = max(peak, len(tasks))
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return rec.summarize(
        measure_from, start + total, duration, concurrency=peak, mode="open", rate=rate, max_lag=max_lag
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (a faster generator leaves more CPU to the server)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server dependency except on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)
