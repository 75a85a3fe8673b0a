"""A harness for driving ``ortserve.core.batcher`` in-process (tests/server/test_batcher*.py).

The runner is a real ``Runner``: each ``run()`` records the batch it was given, tells the test it
started, then blocks on a condition until the test lets it finish. So the test decides when an
instance is busy and when a batch completes, and what gets queued meanwhile: a request submitted
while the only instance is busy (``occupy``) waits in the queue, and the next batch is formed from
exactly what the test queued.

Each request's rows carry its own id as values and the runner answers ``y = 2 * x``, so every caller
can check it got its own rows back. ``run`` wraps a test in a 5 s limit: a bug hangs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from ortserve.core.batcher import DynamicBatcher, InferResult, NoBatching, make_batcher
from ortserve.repository.config import BatchingConfig

__all__ = ["LIMIT_S", "GatedRunner", "Stats", "batcher", "occupy", "own_rows", "run", "submit", "x"]


LIMIT_S = 5.0


class GatedRunner:
    """A ``Runner`` whose batches finish when the test says so.

    ``release(n)`` lets the next ``n`` batches finish, ``open()`` lets every batch through;
    ``started()`` waits for the next batch to start and returns its ``x``. ``behaviour[i]`` makes
    the i-th batch (in start order) return one row too few (``"short"``) or raise (``"raise"``)."""

    output_names: ClassVar[list[str]] = ["y"]

    def __init__(self, instances: int = 1) -> None:
        self._instances = instances
        self._loop = asyncio.get_running_loop()
        self._started: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self._cond = threading.Condition()
        self._permits = 0
        self._open = False
        self.batches: list[np.ndarray] = []  # the ``x`` of every batch, in start order
        self.running = 0
        self.peak = 0  # the most batches running at once
        self.behaviour: dict[int, str] = {}

    @property
    def instances(self) -> int:
        return self._instances

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds["x"]
        with self._cond:
            index = len(self.batches)
            self.batches.append(x)
            self.running += 1
            self.peak = max(self.peak, self.running)
        self._loop.call_soon_threadsafe(self._started.put_nowait, x)
        with self._cond:
            released = self._cond.wait_for(lambda: self._open or self._permits > 0, timeout=LIMIT_S)
            if self._permits > 0:
                self._permits -= 1
            self.running -= 1
        if not released:
            raise TimeoutError("the test never let this batch finish")
        behaviour = self.behaviour.get(index, "ok")
        if behaviour == "raise":
            raise RuntimeError("boom")
        if behaviour == "short":
            return [x[:-1] * 2]
        return [x * 2]

    def release(self, n: int = 1) -> None:
        with self._cond:
            self._permits += n
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    async def started(self) -> np.ndarray:
        return await asyncio.wait_for(self._started.get(), LIMIT_S)

    def ids(self) -> list[list[int]]:
        """Per batch, the request ids of its rows."""
        return [[int(row[0]) for row in x] for x in self.batches]


class Stats:
    """A ``BatchStats`` that keeps what it is told."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []  # (rows, requests)
        self.depths: list[int] = []

    def batch(self, rows: int, requests: int, compute_s: float) -> None:
        self.batches.append((rows, requests))

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)


def x(rid: int, rows: int = 1, width: int = 3) -> dict[str, np.ndarray]:
    """A request's inputs: ``rows`` rows of ``width`` values, all equal to its id."""
    return {"x": np.full((rows, width), rid, np.float32)}


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), LIMIT_S))


@contextlib.asynccontextmanager
async def batcher(
    max_batch_size: int = 8,
    *,
    delay_us: int = 0,
    preferred: tuple[int, ...] = (),
    queue: int = 64,
    enabled: bool = True,
    instances: int = 1,
    adaptive: bool = False,
    inline_max_us: int = 0,
) -> AsyncIterator[tuple[DynamicBatcher | NoBatching, GatedRunner, Stats]]:
    runner, stats = GatedRunner(instances), Stats()
    executor = ThreadPoolExecutor(max_workers=instances + 1)
    # Adaptive sizing and inline runs off by default: the gated runner must not block the event
    # loop, and the batches formed must depend only on what the test queued (test_adaptive.py
    # covers both).
    config = BatchingConfig(enabled, delay_us, preferred, queue, adaptive, inline_max_us)
    b = make_batcher(runner, executor, max_batch_size, config, stats)
    assert isinstance(b, DynamicBatcher | NoBatching)
    try:
        yield b, runner, stats
    finally:
        runner.open()
        await b.close(1.0)
        executor.shutdown(wait=True)


def submit(b: DynamicBatcher | NoBatching, inputs: dict[str, np.ndarray], **kw: object) -> asyncio.Task:
    rows = len(inputs["x"])
    return asyncio.ensure_future(b.submit(inputs, rows, **kw))  # type: ignore[arg-type]


async def occupy(
    b: DynamicBatcher | NoBatching, runner: GatedRunner, rid: int = 99, rows: int = 1
) -> asyncio.Task:
    """Start a batch and wait until it runs: with one instance, what comes next queues. (With a
    queue-delay window, ``rows`` must fill the batch, or the blocker itself waits out the window.)"""
    task = submit(b, x(rid, rows))
    started = await runner.started()
    assert int(started[0, 0]) == rid
    return task


def own_rows(result: InferResult, rid: int, rows: int = 1) -> bool:
    return np.array_equal(result.outputs["y"], np.full((rows, 3), 2 * rid, np.float32))
