"""``NoBatching``: the null batcher, each request runs alone (see ``ortserve.core.batcher``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import Executor

import numpy as np

from ortserve.core.batching import BatcherBase, BatchStats, InferResult, Pending, Runner
from ortserve.core.tracing import NO_TRACING, BatchTracing
from ortserve.errors import Unavailable
from ortserve.repository.config import BatchingConfig

__all__ = ["NoBatching"]


class NoBatching(BatcherBase):
    """Each request runs alone, at most ``instances`` at a time, the rest waiting (bounded) for a slot."""

    def __init__(
        self,
        runner: Runner,
        executor: Executor,
        config: BatchingConfig,
        stats: BatchStats,
        tracing: BatchTracing = NO_TRACING,
    ) -> None:
        super().__init__(runner, executor, config, stats, tracing)
        self._waiting = 0

    def depth(self) -> int:
        return self._waiting

    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None = None, priority: int = 0
    ) -> InferResult:
        self._admit(self._waiting)
        if not self._waiting:
            done = self._run_now(inputs, rows, deadline)
            if done is not None:
                return done
        loop = asyncio.get_running_loop()
        request = Pending(
            inputs,
            rows,
            (),
            deadline,
            (priority, next(self._seq)),
            time.monotonic(),
            loop.create_future(),
            link=self._tracing.link(),
        )
        self._waiting += 1
        self._stats.queue_depth(self._waiting)
        waiter = loop.create_task(self._acquire_and_run(request))
        self._tasks.add(waiter)
        waiter.add_done_callback(self._tasks.discard)
        # A request that expires or is cancelled while waiting is dropped when its turn comes.
        return await self._await(request)

    async def _acquire_and_run(self, request: Pending) -> None:
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
        try:
            await self._run([request])
        except asyncio.CancelledError:  # closed while it ran: answered, never left waiting
            if not request.future.done():
                request.future.set_exception(
                    Unavailable("the model version was unloaded while the request ran")
                )
            raise

    async def close(self, timeout: float) -> None:
        self._closed = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
