"""``DynamicBatcher``: requests queued by priority, gathered into batches by shape, run one batch
per free instance (see ``ortserve.core.batcher``)."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor

import numpy as np

from ortserve.core.batching import BatcherBase, BatchStats, InferResult, Pending, Runner, shape_key
from ortserve.core.costs import ArrivalRate
from ortserve.core.tracing import NO_TRACING, BatchTracing
from ortserve.errors import InferenceFailed, Unavailable
from ortserve.repository.config import BatchingConfig

__all__ = ["DynamicBatcher"]

log = logging.getLogger("ortserve.batcher")


class DynamicBatcher(BatcherBase):
    def __init__(
        self,
        runner: Runner,
        executor: Executor,
        max_batch_size: int,
        config: BatchingConfig,
        stats: BatchStats,
        tracing: BatchTracing = NO_TRACING,
    ) -> None:
        super().__init__(runner, executor, config, stats, tracing)
        self._max_rows = max_batch_size
        self._target = min(max(config.preferred_batch_sizes, default=max_batch_size), max_batch_size)
        self._delay = config.max_queue_delay_us / 1e6
        # Adaptive sizing is asked for (off by default: on the overhead-bound demo it cost 8-34% of
        # throughput, benchmarks.bench_batching); preferred sizes are the operator's choice and override it.
        self._adaptive = config.adaptive and not config.preferred_batch_sizes
        self._arrivals = ArrivalRate(time.monotonic())
        self._queue: list[Pending] = []
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
        now = time.monotonic()
        self._arrivals.arrived(rows, now)
        # Alone, and company is not worth waiting for: run it now if it is tiny.
        if self._adaptive and not self._queue and self._goal(rows, self._delay) <= rows:
            done = self._run_now(inputs, rows, deadline)
            if done is not None:
                return done
        loop = asyncio.get_running_loop()
        # Triton's priority levels: 1 is the highest, 0 means the default (here: after all explicit levels).
        level = priority if priority > 0 else 1 << 31
        request = Pending(
            inputs,
            rows,
            shape_key(inputs),
            deadline,
            (level, next(self._seq)),
            now,
            loop.create_future(),
            link=self._tracing.link(),
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

    def _take(self, key: tuple, limit: int) -> list[Pending]:
        """The oldest live requests of ``key`` up to ``limit`` rows, and always at least the first
        one (a request larger than a preferred size must still run, or the loop would spin)."""
        batch: list[Pending] = []
        keep: list[Pending] = []
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

    def _goal(self, available: int, remaining: float) -> int:
        """Adaptive sizing: the batch size worth waiting for. With the batch cost ``c(n)`` learnt
        from the batches run (``ortserve.core.costs``) and rows arriving at rate ``r``, waiting for
        ``b`` rows yields ``b / ((b - available) / r + c(b))`` rows per second of this instance,
        against ``available / c(available)`` by running now; the wait must fit in the window and
        gain at least 10%. Before the costs are known, the batch fills as configured."""
        now_cost = self.costs.predict(available)
        rate = self._arrivals.rate
        if now_cost is None:
            return self._target
        if rate <= 0 or now_cost <= 0:
            return available
        best, best_rate = available, available / now_cost
        size = available
        while size < self._target:
            size = min(self._target, size * 2)
            wait = (size - available) / rate
            if wait > remaining:
                break
            cost = self.costs.predict(size) or now_cost
            if size / (wait + cost) > best_rate * 1.1:
                best, best_rate = size, size / (wait + cost)
        return best

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
                if remaining <= 0 or self._closed:  # closing: run what is queued, wait for no one
                    timed_out = True
                    break
                if self._adaptive and available >= self._goal(available, remaining):
                    break  # waiting would not raise throughput: run what is there
                self._wakeup.clear()
                handle = loop.call_later(remaining, self._wakeup.set)
                await self._wakeup.wait()
                handle.cancel()
            if first.future.done():  # it left (cancelled, expired) while its batch formed: the next
                return  # request becomes the first, and the window is its own
            # Full (the largest preferred size, else max_batch_size) before the window ended: that size,
            # as Triton forms it; at the window's end, the largest preferred size that is available.
            batch = self._take(first.key, self._limit(available) if timed_out else self._target)
            if batch:
                spawned = True  # the batch's run releases the slot
                if self._instances == 1 or self._inline(sum(r.rows for r in batch)):
                    # Run here: inline (on this thread, without suspending), or on the only
                    # instance, where this loop would wait for the slot anyway. A task's first step
                    # would come after the callers of the batch before, whose answers the loop runs
                    # first: the session idled meanwhile (measured: 3.2 ms per batch on the CNN).
                    await self._run(batch)
                else:
                    self._spawn(batch)
        finally:
            if not spawned:
                self._slots.release()

    async def close(self, timeout: float) -> None:
        """Stop admitting, let queued and running batches finish (up to timeout), then stop."""
        self._closed = True
        self._wakeup.set()  # a batch waiting out its window runs now
        end = time.monotonic() + timeout
        while (self._queue or self._tasks or self._running) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        self._fail(self._queue, Unavailable("the model version was unloaded before the request ran"))
        self._queue.clear()
        # A running batch is not interrupted, its callers get its answers: one this loop runs
        # itself (on the only instance) before the loop stops, the others in their own tasks.
        while self._instances == 1 and self._running:
            await asyncio.sleep(0.01)
        self._loop_task.cancel()
        await asyncio.gather(self._loop_task, *self._tasks, return_exceptions=True)
