"""Dynamic batching for one model version.

``submit`` is the one public coroutine: it queues a request with a future and awaits it.
A single loop task forms batches: it waits for a free instance, then for the first queued
request, then until the batch is full (``max_batch_size`` rows or the largest preferred
size) or ``max_queue_delay_us`` has passed since that request was queued. With ``adaptive``
sizing (``[batching] adaptive = true``, without preferred sizes) it stops waiting as soon as more rows
would not raise throughput, judged from the cost per batch size learnt from the batches run
and the rows' arrival rate (``ortserve.core.costs``). Only requests whose non-batch dims and
dtypes match the first one join its batch; the others wait for the next one. Cancelled and
expired requests are dropped before a batch runs. A batch runs in the thread pool, except one
expected to take less than ``inline_max_us``, which runs on the event loop's thread (the hop
costs more); its failure fails only its own requests. A request that arrives to an empty queue,
with an instance free, when company is not worth waiting for and its run is that small, runs at
once in ``submit`` itself: no queue entry, future or task (the fast path of a busy overhead-bound
model, whose requests reach the batcher one at a time).

``NoBatching`` has the same interface and runs each request alone.
"""

from __future__ import annotations

from concurrent.futures import Executor

from ortserve.core.batching import Batcher, BatchStats, InferResult, Runner
from ortserve.core.dynamic import DynamicBatcher
from ortserve.core.nobatching import NoBatching
from ortserve.core.tracing import NO_TRACING, BatchTracing
from ortserve.repository.config import BatchingConfig

__all__ = ["BatchStats", "Batcher", "DynamicBatcher", "InferResult", "NoBatching", "Runner", "make_batcher"]


def make_batcher(
    runner: Runner,
    executor: Executor,
    max_batch_size: int,
    config: BatchingConfig,
    stats: BatchStats,
    tracing: BatchTracing = NO_TRACING,
) -> Batcher:
    if max_batch_size > 0 and config.enabled:
        return DynamicBatcher(runner, executor, max_batch_size, config, stats, tracing)
    return NoBatching(runner, executor, config, stats, tracing)
