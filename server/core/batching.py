"""What every batcher shares: the runner and stats protocols, the request record with its future,
admission, deadlines, running one batch in the thread pool and splitting its rows back to the
requests (see ``ortserve.core.batcher`` for the batchers themselves)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ortserve.core.costs import CostModel
from ortserve.core.tracing import NO_TRACING, BatchTracing
from ortserve.errors import DeadlineExceeded, InferenceFailed, QueueFull, Unavailable
from ortserve.repository.config import BatchingConfig

__all__ = ["BatchStats", "Batcher", "BatcherBase", "InferResult", "Pending", "Runner", "expire", "shape_key"]


class Runner(Protocol):
    output_names: list[str]

    @property
    def instances(self) -> int: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    # Optional: the threads a run's CPU work spreads over (a runner on the CPU only; absent or None
    # when a run's time is spent elsewhere, e.g. waiting for a GPU).


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
class Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    key: tuple
    deadline: float | None
    order: tuple[int, int]  # (priority, sequence): smaller runs first
    enqueued: float
    future: asyncio.Future
    timer: asyncio.TimerHandle | None = field(default=None)
    link: object | None = field(default=None)  # what the batch's span links to (tracing)

    def __lt__(self, other: Pending) -> bool:
        return self.order < other.order


def expire(future: asyncio.Future, deadline_s: float) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded(f"deadline of {deadline_s * 1000:.1f} ms passed in the queue"))


def shape_key(inputs: Mapping[str, np.ndarray]) -> tuple:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items())


def _row_mismatch(names: list[str], outputs: list[np.ndarray], rows: int) -> InferenceFailed | None:
    """The error for an output whose first dimension is not the batch's rows (a model that does not
    batch the way its signature says), else None."""
    for name, out in zip(names, outputs):
        if out.ndim == 0 or out.shape[0] != rows:
            return InferenceFailed(
                f"output '{name}' has {out.shape[0] if out.ndim else 0} rows for a batch of {rows}"
            )
    return None


class Batcher(Protocol):
    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None = None, priority: int = 0
    ) -> InferResult: ...

    async def close(self, timeout: float) -> None: ...

    def depth(self) -> int: ...


class BatcherBase:
    def __init__(
        self,
        runner: Runner,
        executor: Executor,
        config: BatchingConfig,
        stats: BatchStats,
        tracing: BatchTracing = NO_TRACING,
    ) -> None:
        self._runner = runner
        self._tracing = tracing
        self._executor = executor
        self._config = config
        self._stats = stats
        self._slots = asyncio.Semaphore(runner.instances)
        self._seq = itertools.count()
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self.costs = CostModel()  # compute seconds per batch size, from the batches run
        self._instances = runner.instances
        self._running = 0  # batches running now, each on its own session
        self._inline_s = config.inline_max_us / 1e6
        # The threads a run's CPU work spreads over; None when its time is not the CPU's (a GPU).
        self._cpu_threads: int | None = getattr(runner, "cpu_threads", None)

    def _admit(self, depth: int) -> None:
        if self._closed:
            raise Unavailable("the model version is unloading")
        if depth >= self._config.max_queue_size:
            raise QueueFull(
                f"queue full: {depth} requests waiting, max_queue_size is {self._config.max_queue_size}"
            )

    def _run_now(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None
    ) -> InferResult | None:
        """The fast path: a request that would run alone, with an instance free, expected to take
        less than ``inline_max_us``, runs here and now on the loop's thread: no queue entry, no
        future, no task, no wake-up of the batching loop. None when any of that does not hold (the
        caller queues it). Nothing awaits in here, so the free instance stays free until it ran."""
        expected = self.costs.predict(rows)
        if expected is None or expected >= self._inline_s or self._running >= self._instances or self._closed:
            return None
        start = time.monotonic()
        if deadline is not None and deadline <= start:
            raise DeadlineExceeded("the deadline passed before the request ran")
        try:
            with self._tracing.batch([self._tracing.link()], rows):
                outputs, seconds = self._timed(inputs)
                self.costs.observe(rows, seconds)
        except Exception as e:  # ONNX Runtime's errors: this request only
            raise InferenceFailed(f"inference failed: {e}") from e
        compute = time.monotonic() - start
        self._stats.batch(rows, 1, compute)
        error = _row_mismatch(self._runner.output_names, outputs, rows) if rows > 0 else None
        if error is not None:
            raise error
        return InferResult(dict(zip(self._runner.output_names, outputs)), 0.0, compute, rows)

    async def _await(self, request: Pending) -> InferResult:
        if request.deadline is not None:
            loop = asyncio.get_running_loop()
            request.timer = loop.call_at(
                request.deadline, expire, request.future, request.deadline - request.enqueued
            )
        try:
            return await request.future
        finally:
            if request.timer is not None:
                request.timer.cancel()

    async def _run(self, batch: list[Pending]) -> None:
        """Run one batch (the caller holds a slot, released here as soon as the session is done
        with it: before the answers are handed out, so that the next batch starts first.)"""
        self._running += 1
        held = True
        try:
            start = time.monotonic()
            live = [r for r in batch if not r.future.done()]
            for r in live:
                if r.deadline is not None and r.deadline <= start:
                    expire(r.future, r.deadline - r.enqueued)
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
            try:
                with self._tracing.batch([r.link for r in live], rows):
                    outputs = await self._compute(feeds, rows)
            except Exception as e:  # ONNX Runtime's errors: fail this batch's requests only
                self._fail(live, InferenceFailed(f"inference failed: {e}"))
                return
            except asyncio.CancelledError:  # unloaded while it ran (past close's timeout): answered
                self._fail(live, Unavailable("the model version was unloaded while the request ran"))
                raise
            compute = time.monotonic() - start
            # The session is free (its outputs are host arrays of their own): let the batching
            # loop form and start the next batch before the loop resumes this batch's callers,
            # whose answers (encoding, gRPC's send) would otherwise run first and leave the
            # session idle meanwhile (benchmarks/RESULTS.md, issue 16's third pass).
            held = False
            self._release()
            self._stats.batch(rows, len(live), compute)
            self._deliver(live, outputs, rows, start, compute)
        finally:
            if held:
                self._release()

    @staticmethod
    def _fail(requests: list[Pending], error: Exception) -> None:
        for r in requests:
            if not r.future.done():
                r.future.set_exception(error)

    def _release(self) -> None:
        self._running -= 1
        self._slots.release()

    async def _compute(self, feeds: Mapping[str, np.ndarray], rows: int) -> list[np.ndarray]:
        """Run the batch: in the thread pool, or on this thread when the batch is expected to take
        less than ``inline_max_us`` (then the hop to a thread and back costs more than the run)."""
        if self._inline(rows):
            outputs, seconds = self._timed(feeds)
        else:
            outputs, seconds = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._timed, feeds
            )
        self.costs.observe(rows, seconds)
        return outputs

    def _inline(self, rows: int) -> bool:
        """Whether a batch of ``rows`` runs on the event loop's thread (expected to take less than
        ``inline_max_us``)."""
        expected = self.costs.predict(rows)
        return expected is not None and expected < self._inline_s

    def _timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
        """Run a batch; its outputs and its compute seconds: the wall time, but for a run on the
        CPU no more than the calling thread's CPU time times the threads the run spreads over. In
        the thread pool, the wall time also holds the wait to take the GIL back from a busy event
        loop once ONNX Runtime returns (up to ``sys.getswitchinterval()``): learnt as compute, it
        made batches of the demo's ~20 us model look too slow to run on the loop, so they kept
        paying the thread hop (measured: 14% more CPU per request, benchmarks/RESULTS.md)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        outputs = self._runner.run(feeds)
        seconds = time.perf_counter() - wall
        if self._cpu_threads:
            seconds = min(seconds, (time.thread_time() - cpu) * self._cpu_threads)
        return outputs, seconds

    def _deliver(
        self, live: list[Pending], outputs: list[np.ndarray], rows: int, start: float, compute: float
    ) -> None:
        names = self._runner.output_names
        batched = live[0].rows > 0
        if batched:
            err = _row_mismatch(names, outputs, rows)
            if err is not None:
                self._fail(live, err)
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

    def _spawn(self, batch: list[Pending]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
