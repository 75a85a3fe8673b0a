"""The dynamic batcher in-process, part 1: how batches form, the queue-delay window, requests
that leave before their batch, failing batches (part 2, test_batcher_bounds.py: queue bounds,
close, NoBatching; the harness: batcher_harness.py).

No outcome depends on a sleep (``asyncio.sleep(0)`` only lets submitted requests reach the queue),
except in the two tests about the queue-delay window, which measure time because time is what
they are about, with margins that only a 150 ms stall of the event loop could break.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from ortserve.core.batcher import DynamicBatcher, NoBatching
from ortserve.errors import DeadlineExceeded, InferenceFailed
from tests.server.batcher_harness import batcher, occupy, own_rows, run, submit, x


# -- which batcher -------------------------------------------------------------------------------
def test_make_batcher_picks_no_batching_when_disabled_or_without_a_batch_dimension():
    async def body() -> None:
        async with batcher(8) as (b, _, _):
            assert isinstance(b, DynamicBatcher)
        async with batcher(8, enabled=False) as (b, _, _):
            assert isinstance(b, NoBatching)
        async with batcher(0) as (b, _, _):
            assert isinstance(b, NoBatching)

    run(body)


# -- forming batches ---------------------------------------------------------------------------
def test_one_future_per_request_each_gets_its_own_rows():
    async def body() -> None:
        async with batcher(8) as (b, runner, stats):
            blocker = await occupy(b, runner)
            a, bb, c = submit(b, x(1)), submit(b, x(2, rows=2)), submit(b, x(3))
            await asyncio.sleep(0)  # let the three submits queue
            assert b.depth() == 3
            runner.open()
            ra, rb, rc = await asyncio.gather(a, bb, c)
            assert own_rows(ra, 1) and own_rows(rb, 2, rows=2) and own_rows(rc, 3)
            assert ra.batch_size == rb.batch_size == rc.batch_size == 4
            assert own_rows(await blocker, 99)
            assert runner.ids() == [[99], [1, 2, 2, 3]]
            assert stats.batches == [(1, 1), (4, 3)]
            assert stats.depths[-1] == 0

    run(body)


def test_a_full_batch_runs_without_waiting_for_the_window():
    async def body() -> None:
        async with batcher(4, delay_us=10_000_000) as (b, runner, _):  # a 10 s window
            runner.open()
            results = await asyncio.wait_for(asyncio.gather(*(submit(b, x(i)) for i in range(4))), 2.0)
            assert [r.batch_size for r in results] == [4, 4, 4, 4]
            assert runner.ids() == [[0, 1, 2, 3]]

    run(body)


def test_batches_hold_at_most_max_batch_size_rows():
    async def body() -> None:
        async with batcher(4) as (b, runner, stats):
            await occupy(b, runner)
            tasks = [submit(b, x(i)) for i in range(6)]
            await asyncio.sleep(0)
            runner.open()
            results = await asyncio.gather(*tasks)
            assert runner.ids()[1:] == [[0, 1, 2, 3], [4, 5]]
            assert [r.batch_size for r in results] == [4, 4, 4, 4, 2, 2]
            assert stats.batches[1:] == [(4, 4), (2, 2)]

    run(body)


def test_on_timeout_the_largest_preferred_size_available_runs():
    async def body() -> None:
        async with batcher(8, preferred=(2, 4)) as (b, runner, _):
            await occupy(b, runner)
            tasks = [submit(b, x(i)) for i in range(3)]
            await asyncio.sleep(0)
            runner.open()
            await asyncio.gather(*tasks)
            # 3 queued, the window over (0 us): a batch of 2 (preferred), then the last one alone
            assert runner.ids()[1:] == [[0, 1], [2]]

    run(body)


def test_a_batch_formed_before_the_window_ends_is_the_largest_preferred_size():
    async def body() -> None:
        # 5 rows queue while the instance is busy; when it frees, 4 (the target) are available
        # well inside the 0.5 s window, so the batch forms at once; the last row waits out the window.
        async with batcher(8, delay_us=500_000, preferred=(2, 4)) as (b, runner, _):
            await occupy(b, runner, rows=4)
            tasks = [submit(b, x(i)) for i in range(5)]
            await asyncio.sleep(0)
            runner.open()
            await asyncio.gather(*tasks)
            assert runner.ids()[1:] == [[0, 1, 2, 3], [4]]

    run(body)


def test_priority_order_then_arrival_order():
    async def body() -> None:
        async with batcher(1) as (b, runner, _):  # one row per batch: the batch order is the queue order
            await occupy(b, runner)
            # Triton's levels: 1 is the highest; 0 (the default) runs after every explicit level.
            tasks = [submit(b, x(rid), priority=p) for rid, p in ((1, 0), (2, 2), (3, 1), (4, 0), (5, 1))]
            await asyncio.sleep(0)
            runner.open()
            await asyncio.gather(*tasks)
            assert runner.ids()[1:] == [[3], [5], [2], [1], [4]]

    run(body)


def test_fifo_within_a_shape_and_different_shapes_never_share_a_batch():
    async def body() -> None:
        async with batcher(4) as (b, runner, _):
            await occupy(b, runner)
            a = submit(b, x(1, rows=2))
            bb = submit(b, x(2, rows=3))  # does not fit beside a: nothing of its shape may jump it
            c = submit(b, x(3))
            d = submit(b, x(4, width=5))  # another shape
            e = submit(b, x(5))
            await asyncio.sleep(0)
            runner.open()
            _, rb, rc, rd, _ = await asyncio.gather(a, bb, c, d, e)
            assert runner.ids()[1:] == [[1, 1], [2, 2, 2, 3], [4], [5]]
            assert [batch.shape[1] for batch in runner.batches[1:]] == [3, 3, 5, 3]
            assert own_rows(rb, 2, rows=3) and own_rows(rc, 3)
            assert np.array_equal(rd.outputs["y"], np.full((1, 5), 8, np.float32))

    run(body)


# -- the queue-delay window (these measure time: it is what they are about) ---------------------
def test_a_lone_request_waits_out_the_window_then_runs_alone():
    async def body() -> None:
        async with batcher(8, delay_us=20_000) as (b, runner, _):
            runner.open()
            result = await submit(b, x(1))
            assert result.queue_s >= 0.0199 and result.batch_size == 1

    run(body)


def test_the_window_starts_at_the_first_queued_request():
    async def body() -> None:
        async with batcher(8, delay_us=300_000) as (b, runner, _):
            runner.open()
            first = submit(b, x(1))
            await asyncio.sleep(0.15)
            second = submit(b, x(2))
            r1, r2 = await asyncio.gather(first, second)
            assert runner.ids() == [[1, 2]]
            assert r1.queue_s >= 0.299
            # the second waited only for the rest of the first one's window, not a window of its own
            assert r2.queue_s < 0.3

    run(body)


def test_when_the_first_request_leaves_the_next_one_waits_its_own_window():
    async def body() -> None:
        async with batcher(8, delay_us=300_000) as (b, runner, _):
            runner.open()
            first = submit(b, x(1))
            await asyncio.sleep(0.05)
            first.cancel()
            second = await submit(b, x(2))
            assert runner.ids() == [[2]]
            assert second.queue_s >= 0.299  # not run at once as the first one's batch

    run(body)


# -- requests that leave before their batch --------------------------------------------------
def test_cancelled_and_expired_requests_are_dropped_before_the_batch_runs():
    async def body() -> None:
        async with batcher(8) as (b, runner, stats):
            await occupy(b, runner)
            a = submit(b, x(1))
            cancelled = submit(b, x(2))
            expired = submit(b, x(3), deadline=time.monotonic())
            d = submit(b, x(4))
            await asyncio.sleep(0)
            cancelled.cancel()
            with pytest.raises(DeadlineExceeded):
                await expired
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            runner.open()
            ra, rd = await asyncio.gather(a, d)
            assert own_rows(ra, 1) and own_rows(rd, 4) and ra.batch_size == 2
            assert runner.ids()[1:] == [[1, 4]]
            assert stats.batches[1:] == [(2, 2)]

    run(body)


def test_a_caller_cancelled_while_its_batch_runs_leaves_the_rest_answered():
    async def body() -> None:
        async with batcher(8) as (b, runner, _):
            await occupy(b, runner)
            a, bb = submit(b, x(1)), submit(b, x(2))
            await asyncio.sleep(0)
            runner.release()  # the blocker
            assert (await runner.started()).shape[0] == 2  # a and b run together
            a.cancel()
            runner.open()
            assert own_rows(await bb, 2)
            with pytest.raises(asyncio.CancelledError):
                await a
            assert own_rows(await submit(b, x(3)), 3)  # and the batcher goes on

    run(body)


# -- failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("short", "output 'y' has 1 rows for a batch of 2"), ("raise", "inference failed: boom")],
)
def test_a_failing_batch_fails_only_its_own_requests(behaviour, message):
    async def body() -> None:
        async with batcher(2) as (b, runner, stats):
            runner.behaviour[1] = behaviour
            blocker = await occupy(b, runner)
            a, bb, c = submit(b, x(1)), submit(b, x(2)), submit(b, x(3))
            await asyncio.sleep(0)
            runner.open()
            results = await asyncio.gather(a, bb, c, return_exceptions=True)
            assert runner.ids()[1:] == [[1, 2], [3]]
            for failed in results[:2]:
                assert isinstance(failed, InferenceFailed) and message in str(failed)
            assert own_rows(results[2], 3) and own_rows(await blocker, 99)
            # a batch that raised is not counted as run; one that ran and answered wrongly is
            assert stats.batches == [(1, 1), *([(2, 2)] if behaviour == "short" else []), (1, 1)]

    run(body)
