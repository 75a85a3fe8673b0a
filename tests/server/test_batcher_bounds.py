"""The dynamic batcher in-process, part 2: a full queue, close() draining and answering what
is left, and NoBatching's bounds (part 1: test_batcher.py; the harness: batcher_harness.py).

close()'s timeouts only bound how long a test takes; no outcome depends on a sleep.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ortserve.errors import DeadlineExceeded, QueueFull, Unavailable
from tests.server.batcher_harness import LIMIT_S, batcher, occupy, own_rows, run, submit, x


# -- bounds and shutdown -----------------------------------------------------------------------
def test_a_full_queue_rejects_at_once_and_cancelled_requests_free_their_place():
    async def body() -> None:
        async with batcher(8, queue=2) as (b, runner, _):
            await occupy(b, runner)
            a, bb = submit(b, x(1)), submit(b, x(2))
            await asyncio.sleep(0)
            assert b.depth() == 2
            with pytest.raises(QueueFull, match="max_queue_size is 2"):
                await b.submit(x(3), 1)  # raises before it would wait
            a.cancel()
            await asyncio.gather(a, return_exceptions=True)
            d = submit(b, x(4))  # a's place is free again
            await asyncio.sleep(0)
            runner.open()
            rb, rd = await asyncio.gather(bb, d)
            assert own_rows(rb, 2) and own_rows(rd, 4)
            assert runner.ids()[1:] == [[2, 4]]

    run(body)


def test_close_drains_queued_and_running_batches_and_refuses_new_requests():
    async def body() -> None:
        async with batcher(8) as (b, runner, _):
            blocker = await occupy(b, runner)
            a, bb = submit(b, x(1)), submit(b, x(2))
            await asyncio.sleep(0)
            closing = asyncio.ensure_future(b.close(LIMIT_S))
            await asyncio.sleep(0)
            with pytest.raises(Unavailable, match="unloading"):
                await b.submit(x(3), 1)
            runner.open()
            await closing
            results = await asyncio.gather(blocker, a, bb)
            assert [own_rows(r, rid) for r, rid in zip(results, (99, 1, 2))] == [True, True, True]

    run(body)


def test_close_answers_what_is_still_queued_at_its_timeout_with_unavailable():
    async def body() -> None:
        async with batcher(8) as (b, runner, _):
            blocker = await occupy(b, runner)  # and it stays running past the timeout
            a, bb = submit(b, x(1)), submit(b, x(2))
            await asyncio.sleep(0)
            closing = asyncio.ensure_future(b.close(0.05))
            for queued in (a, bb):
                with pytest.raises(Unavailable, match="unloaded before the request ran"):
                    await queued
            assert not closing.done()  # a running batch cannot be interrupted: close waits for it
            runner.open()
            await closing
            assert own_rows(await blocker, 99)
            assert runner.ids() == [[99]]

    run(body)


def test_close_runs_what_is_queued_without_waiting_for_the_window():
    async def body() -> None:
        async with batcher(8, delay_us=1_000_000) as (b, runner, _):  # a 1 s window
            runner.open()
            a = submit(b, x(1))
            await asyncio.sleep(0)
            await b.close(0.2)
            assert own_rows(await a, 1)

    run(body)


def test_the_only_instance_takes_its_next_batch_before_the_callers_of_the_last_one_resume():
    """Once a batch's run returns, the next batch is formed and handed to the session first, then
    the batch's callers are answered: their answers (encoding, gRPC's send) would otherwise keep
    the session idle."""

    async def body() -> None:
        async with batcher(8) as (b, runner, _):
            seen: list[int] = []

            async def caller() -> None:
                assert own_rows(await b.submit(x(99), 1), 99)
                seen.append(b.depth())  # what is still queued when this caller resumes

            first = asyncio.ensure_future(caller())
            await runner.started()
            following = [submit(b, x(1)), submit(b, x(2))]
            await asyncio.sleep(0)
            assert b.depth() == 2
            runner.release()  # the first batch's run returns
            assert [int(v) for v in (await runner.started())[:, 0]] == [1, 2]
            await first
            assert seen == [0]
            runner.open()
            assert [own_rows(await t, rid) for t, rid in zip(following, (1, 2))] == [True, True]

    run(body)


# -- NoBatching ----------------------------------------------------------------------------------
def test_no_batching_runs_each_request_alone_at_most_instances_at_once_and_bounds_the_wait():
    async def body() -> None:
        async with batcher(8, enabled=False, queue=2, instances=2) as (b, runner, stats):
            a, bb = submit(b, x(1, rows=2)), submit(b, x(2))
            await runner.started()
            await runner.started()  # both instances busy
            c, d = submit(b, x(3)), submit(b, x(4))
            await asyncio.sleep(0)
            assert b.depth() == 2
            with pytest.raises(QueueFull):
                await b.submit(x(5), 1)
            runner.open()
            results = await asyncio.gather(a, bb, c, d)
            assert own_rows(results[0], 1, rows=2) and own_rows(results[3], 4)
            assert sorted(runner.ids()) == [[1, 1], [2], [3], [4]]
            assert runner.peak == 2
            assert sorted(stats.batches) == [(1, 1), (1, 1), (1, 1), (2, 1)]

    run(body)


def test_no_batching_drops_a_request_that_expires_while_it_waits():
    async def body() -> None:
        async with batcher(8, enabled=False) as (b, runner, _):
            blocker = await occupy(b, runner)
            late = submit(b, x(1), deadline=time.monotonic())
            with pytest.raises(DeadlineExceeded):
                await late
            runner.open()
            await blocker
            assert runner.ids() == [[99]]

    run(body)


def test_no_batching_close_answers_a_request_whose_run_outlives_the_timeout():
    async def body() -> None:
        async with batcher(8, enabled=False) as (b, runner, _):
            running = await occupy(b, runner)
            await b.close(0.05)
            try:
                done, _ = await asyncio.wait({running}, timeout=0.2)
                assert running in done, "the caller of the running request was never answered"
            finally:
                running.cancel()

    run(body)
