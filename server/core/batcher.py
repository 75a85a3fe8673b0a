"""Dynamic batching for one model version.

``submit`` is the one public coroutine: it queues a request with a future and awaits it.
A single loop task forms batches: it waits for a free instance, then for the first queued
request, then until the batch is full (``max_batch_size`` rows or the largest preferred
size) or ``max_queue_delay_us`` has passed since that request was queued. Only requests
whose non-batch dims and dtypes match the first one join its batch; the others wait for
the next one. Cancelled and expired requests are dropped before a batch runs. A batch runs
in the thread pool, never on the event loop, and its failure fails only its own requests.

``NoBatching`` has the same interface and runs each request alone.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ortserve.errors import DeadlineExceeded, InferenceFailed, QueueFull, Unavailable
from ortserve.repository.config import BatchingConfig

log = logging.getLogger("ortserve.batcher")

__all__ = ["BatchStats", "Batcher", "DynamicBatcher", "InferResult", "NoBatching", "Runner", "make_batcher"]


class Runner(Protocol):
    output_names: list[str]

    @property
    def instances(self) -> int: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class BatchStats(Protocol):
    """Told about every batch run and queue change (metrics, V2 statistics)."""

    def batch(self, rows: int, requests: int, compute_s: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass(slots=True)
class InferResult:
    outputs: dict[str, np.ndarray]
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass(slots=True, eq=False)
class _Request:
    inputs: Mapping[str, np.ndarray]
    rows: int
    key: tuple
    deadline: float | None
    order: tuple[int, int]  # (priority, sequence): smaller runs first
    enqueued: float
    future: asyncio.Future
    timer: asyncio.TimerHandle | None = field(default=None)

    def __lt__(self, other: _Request) -> bool:
        return self.order < other.order


def _expire(future: asyncio.Future, deadline_s: float) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded(f"deadline of {deadline_s * 1000:.1f} ms passed in the queue"))


def _shape_key(inputs: Mapping[str, np.ndarray]) -> tuple:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items())


class Batcher(Protocol):
    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None = None, priority: int = 0
    ) -> InferResult: ...

    async def close(self, timeout: float) -> None: ...

    def depth(self) -> int: ...


class _Base:
    def __init__(self, runner: Runner, executor: Executor, config: BatchingConfig, stats: BatchStats) -> None:
        self._runner = runner
        self._executor = executor
        self._config = config
        self._stats = stats
        self._slots = asyncio.Semaphore(runner.instances)
        self._seq = itertools.count()
        self._closed = False
        self._tasks: set[asyncio.Task] = set()

    def _admit(self, depth: int) -> None:
        if self._closed:
            raise Unavailable("the model version is unloading")
        if depth >= self._config.max_queue_size:
            raise QueueFull(
                f"queue full: {depth} requests waiting, max_queue_size is {self._config.max_queue_size}"
            )

    async def _await(self, request: _Request) -> InferResult:
        if request.deadline is not None:
            loop = asyncio.get_running_loop()
            request.timer = loop.call_at(
                request.deadline, _expire, request.future, request.deadline - request.enqueued
            )
        try:
            return await request.future
        finally:
            if request.timer is not None:
                request.timer.cancel()

    async def _run(self, batch: list[_Request]) -> None:
        """Run one batch (the caller holds a slot, released here)."""
        try:
            start = time.monotonic()
            live = [r for r in batch if not r.future.done()]
            for r in live:
                if r.deadline is not None and r.deadline <= start:
                    _expire(r.future, r.deadline - r.enqueued)
            live = [r for r in live if not r.future.done()]
            for r in live:
                # The deadline bounds the time in the queue (Triton's timeout semantics): once a
                # request runs, its answer is worth delivering. (A gRPC deadline that passes while
                # it runs still ends the RPC: gRPC itself cancels it.)
                if r.timer is not None:
                    r.timer.cancel()
            if not live:
                return
            rows = sum(r.rows for r in live)
            if len(live) == 1:
                feeds = live[0].inputs
            else:
                feeds = {name: np.concatenate([r.inputs[name] for r in live]) for name in live[0].inputs}
            loop = asyncio.get_running_loop()
            try:
                outputs = await loop.run_in_executor(self._executor, self._runner.run, feeds)
            except Exception as e:  # ONNX Runtime's errors: fail this batch's requests only
                err = InferenceFailed(f"inference failed: {e}")
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(err)
                return
            compute = time.monotonic() - start
            self._stats.batch(rows, len(live), compute)
            self._deliver(live, outputs, rows, start, compute)
        finally:
            self._slots.release()

    def _deliver(
        self, live: list[_Request], outputs: list[np.ndarray], rows: int, start: float, compute: float
    ) -> None:
        names = self._runner.output_names
        batched = live[0].rows > 0
        if batched:
            for name, out in zip(names, outputs):
                if out.ndim == 0 or out.shape[0] != rows:
                    err = InferenceFailed(
                        f"output '{name}' has {out.shape[0] if out.ndim else 0} rows for a batch of {rows}"
                    )
                    for r in live:
                        if not r.future.done():
                            r.future.set_exception(err)
                    return
        offset = 0
        for r in live:
            if batched and len(live) > 1:
                result = {n: o[offset : offset + r.rows] for n, o in zip(names, outputs)}
            else:
                result = dict(zip(names, outputs))
            offset += r.rows
            if not r.future.done():
                r.future.set_result(InferResult(result, start - r.enqueued, compute, rows))

    def _spawn(self, batch: list[_Request]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class DynamicBatcher(_Base):
    def __init__(
        self,
        runner: Runner,
        executor: Executor,
        max_batch_size: int,
        config: BatchingConfig,
        stats: BatchStats,
    ) -> None:
        super().__init__(runner, executor, config, stats)
        self._max_rows = max_batch_size
        self._target = min(max(config.preferred_batch_sizes, default=max_batch_size), max_batch_size)
        self._delay = config.max_queue_delay_us / 1e6
        self._queue: list[_Request] = []
        self._wakeup = asyncio.Event()
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    def depth(self) -> int:
        return len(self._queue)

    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None = None, priority: int = 0
    ) -> InferResult:
        if len(self._queue) >= self._config.max_queue_size:
            self._queue = [r for r in self._queue if not r.future.done()]
        self._admit(len(self._queue))
        loop = asyncio.get_running_loop()
        # Triton's priority levels: 1 is the highest, 0 means the default (here: after all explicit levels).
        level = priority if priority > 0 else 1 << 31
        request = _Request(
            inputs,
            rows,
            _shape_key(inputs),
            deadline,
            (level, next(self._seq)),
            time.monotonic(),
            loop.create_future(),
        )
        bisect.insort(self._queue, request)
        self._stats.queue_depth(len(self._queue))
        self._wakeup.set()
        return await self._await(request)

    def _available(self, key: tuple) -> int:
        rows = 0
        for r in self._queue:
            if r.key == key and not r.future.done():
                if rows + r.rows > self._max_rows:
                    break
                rows += r.rows
        return rows

    def _take(self, key: tuple, limit: int) -> list[_Request]:
        """The oldest live requests of ``key`` up to ``limit`` rows, and always at least the first
        one (a request larger than a preferred size must still run, or the loop would spin)."""
        batch: list[_Request] = []
        keep: list[_Request] = []
        rows, full = 0, False
        for r in self._queue:
            if r.future.done():
                continue
            if not full and r.key == key and (rows + r.rows <= limit or not batch):
                batch.append(r)
                rows += r.rows
            else:
                if r.key == key:
                    full = True  # keep FIFO order within a key: nothing jumps a request that did not fit
                keep.append(r)
        self._queue = keep
        self._stats.queue_depth(len(keep))
        return batch

    def _limit(self, available: int) -> int:
        """On timeout: the largest preferred size that is available, else everything available."""
        prefs = [p for p in self._config.preferred_batch_sizes if p <= available]
        return max(prefs) if prefs else self._max_rows

    async def _loop(self) -> None:
        while True:
            try:
                await self._form_batch()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not leave every queued request hanging
                log.exception("batcher loop error; failing the queued requests and going on")
                for r in self._queue:
                    if not r.future.done():
                        r.future.set_exception(InferenceFailed("internal batcher error"))
                self._queue.clear()

    async def _form_batch(self) -> None:
        """Wait for a free instance and a queued request, gather its batch, start it."""
        await self._slots.acquire()
        spawned = False
        try:
            while True:
                self._queue = [r for r in self._queue if not r.future.done()]
                if self._queue:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._queue[0]
            window_end = first.enqueued + self._delay
            timed_out = False
            loop = asyncio.get_running_loop()
            while (available := self._available(first.key)) < self._target and not first.future.done():
                remaining = window_end - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                self._wakeup.clear()
                handle = loop.call_later(remaining, self._wakeup.set)
                await self._wakeup.wait()
                handle.cancel()
            batch = self._take(first.key, self._limit(available) if timed_out else self._max_rows)
            if batch:
                self._spawn(batch)  # the batch task releases the slot
                spawned = True
        finally:
            if not spawned:
                self._slots.release()

    async def close(self, timeout: float) -> None:
        """Stop admitting, let queued and running batches finish (up to timeout), then stop."""
        self._closed = True
        end = time.monotonic() + timeout
        while (self._queue or self._tasks) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        self._loop_task.cancel()
        for r in self._queue:
            if not r.future.done():
                r.future.set_exception(Unavailable("the model version was unloaded before the request ran"))
        self._queue.clear()
        await asyncio.gather(self._loop_task, *self._tasks, return_exceptions=True)


class NoBatching(_Base):
    """Each request runs alone, at most ``instances`` at a time, the rest waiting (bounded) for a slot."""

    def __init__(self, runner: Runner, executor: Executor, config: BatchingConfig, stats: BatchStats) -> None:
        super().__init__(runner, executor, config, stats)
        self._waiting = 0

    def depth(self) -> int:
        return self._waiting

    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None = None, priority: int = 0
    ) -> InferResult:
        self._admit(self._waiting)
        loop = asyncio.get_running_loop()
        request = _Request(
            inputs, rows, (), deadline, (priority, next(self._seq)), time.monotonic(), loop.create_future()
        )
        self._waiting += 1
        self._stats.queue_depth(self._waiting)
        waiter = loop.create_task(self._acquire_and_run(request))
        self._tasks.add(waiter)
        waiter.add_done_callback(self._tasks.discard)
        # A request that expires or is cancelled while waiting is dropped when its turn comes.
        return await self._await(request)

    async def _acquire_and_run(self, request: _Request) -> None:
        try:
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
                self._stats.queue_depth(self._waiting)
        except asyncio.CancelledError:  # closed before its turn: its caller must not wait forever
            if not request.future.done():
                request.future.set_exception(
                    Unavailable("the model version was unloaded before the request ran")
                )
            raise
        await self._run([request])

    async def close(self, timeout: float) -> None:
        self._closed = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def make_batcher(
    runner: Runner, executor: Executor, max_batch_size: int, config: BatchingConfig, stats: BatchStats
) -> Batcher:
    if max_batch_size > 0 and config.enabled:
        return DynamicBatcher(runner, executor, max_batch_size, config, stats)
    return NoBatching(runner, executor, config, stats)
