"""Adaptive batch sizing and inline runs (``ortserve.core.costs``, ``DynamicBatcher._goal``,
``BatcherBase._compute``): the cost model's fit, the arrival rate, the sizing decision, and where
a batch runs, with real runners (one of them a real ONNX Runtime session)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np
import onnxruntime as ort
import pytest

from ortserve.core.batcher import DynamicBatcher, make_batcher
from ortserve.core.costs import ArrivalRate, CostModel
from ortserve.errors import DeadlineExceeded
from ortserve.repository.config import BatchingConfig
from tests import onnx_models as m
from tests.server.batcher_harness import Stats, run


def test_cost_model_separates_the_fixed_cost_from_the_cost_per_row():
    costs = CostModel()
    for rows in [1, 2, 4, 8, 16, 32] * 3:
        costs.observe(rows, 0.001 + 0.0001 * rows)
    assert costs.fixed == pytest.approx(0.001, rel=1e-6)
    assert costs.per_row == pytest.approx(0.0001, rel=1e-6)
    assert costs.predict(64) == pytest.approx(0.0074, rel=1e-6)


def test_cost_model_predicts_nothing_before_enough_batches_and_assumes_no_fixed_cost_on_one_size():
    costs = CostModel(min_batches=8)
    for _ in range(7):
        costs.observe(4, 0.004)
    assert costs.predict(4) is None
    costs.observe(4, 0.004)
    # One size cannot tell a fixed cost from a cost per row: all of it is taken as per row, the
    # assumption under which waiting for more rows never pays.
    assert (costs.fixed, costs.per_row) == (0.0, pytest.approx(0.001))


def test_cost_model_follows_a_change():
    costs = CostModel(decay=0.9)
    for rows in [1, 8] * 20:
        costs.observe(rows, 0.001 * rows)
    for rows in [1, 8] * 40:
        costs.observe(rows, 0.003 * rows)
    assert costs.predict(8) == pytest.approx(0.024, rel=0.05)


def test_arrival_rate_measures_rows_per_second():
    rate = ArrivalRate(0.0, horizon_s=0.05)
    for i in range(1, 2001):  # 2 rows every 0.5 ms: 4000 rows/s
        rate.arrived(2, i * 0.0005)
    assert rate.rate == pytest.approx(4000, rel=0.05)
    rate.arrived(1, 1.0 + 1.0)  # a second of silence, then one row
    assert rate.rate < 100


class SleepRunner:
    """A runner whose batch of n rows takes ``fixed + per_row * n`` seconds (a model whose cost
    the test chooses) and records the thread each batch ran on."""

    output_names: ClassVar[list[str]] = ["y"]
    instances = 1

    def __init__(self, fixed: float, per_row: float) -> None:
        self.fixed, self.per_row = fixed, per_row
        self.threads: list[int] = []
        self.sizes: list[int] = []

    def run(self, feeds):
        x = feeds["x"]
        self.threads.append(threading.get_ident())
        self.sizes.append(len(x))
        time.sleep(self.fixed + self.per_row * len(x))
        return [x * 2]


def _batcher(runner, *, delay_us: int, adaptive: bool = True, inline_max_us: int = 0) -> DynamicBatcher:
    config = BatchingConfig(max_queue_delay_us=delay_us, adaptive=adaptive, inline_max_us=inline_max_us)
    b = make_batcher(runner, ThreadPoolExecutor(2), 64, config, Stats())
    assert isinstance(b, DynamicBatcher)
    return b


def _one(rid: float) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 3), rid, np.float32)}


def test_goal_waits_only_when_a_fixed_cost_makes_larger_batches_pay():
    async def go():
        b = _batcher(SleepRunner(0, 0), delay_us=5000)
        for rows in [1, 2, 4, 8, 16] * 4:
            b.costs.observe(rows, 0.002 + 0.00001 * rows)  # a fixed cost of 2 ms
        b._arrivals.rate = 10_000.0  # rows per second
        assert b._goal(1, remaining=0.005) > 1  # 0.4 ms of waiting buys 4x the rows
        assert b._goal(1, remaining=0.00005) == 1  # the window does not allow the wait (0.1 ms a row)
        b._arrivals.rate = 10.0
        assert b._goal(1, remaining=0.005) == 1  # rows come too slowly to be worth waiting for
        proportional = _batcher(SleepRunner(0, 0), delay_us=5000)
        for rows in [1, 2, 4, 8, 16] * 4:
            proportional.costs.observe(rows, 0.001 * rows)  # no fixed cost: nothing to gain
        proportional._arrivals.rate = 10_000.0
        assert proportional._goal(1, remaining=0.005) == 1
        await b.close(1.0)
        await proportional.close(1.0)

    run(go)


def test_once_the_costs_are_known_a_lone_request_does_not_wait_out_the_window():
    """A model whose cost is all per row (batching it gains nothing): the first batches wait out
    the window as configured; once the costs are learnt, a lone request runs at once."""

    async def go():
        window_s = 0.4
        adaptive = _batcher(SleepRunner(0, 0.0005), delay_us=int(window_s * 1e6))
        fixed = _batcher(SleepRunner(0, 0.0005), delay_us=int(window_s * 1e6), adaptive=False)
        for rows in (1, 2, 4, 8, 16, 1, 2, 4):  # the costs, learnt from real batches
            adaptive.costs.observe(rows, 0.0005 * rows)
        start = time.monotonic()
        await adaptive.submit(_one(1), 1)
        adaptive_s = time.monotonic() - start
        start = time.monotonic()
        await fixed.submit(_one(1), 1)
        fixed_s = time.monotonic() - start
        assert fixed_s >= window_s * 0.9  # waited out the window
        assert adaptive_s < window_s / 2, adaptive_s
        await adaptive.close(1.0)
        await fixed.close(1.0)

    asyncio.run(asyncio.wait_for(go(), 10))


def test_tiny_batches_run_on_the_event_loop_thread_once_known_to_be_tiny():
    async def go():
        session = ort.InferenceSession(m.addmul().SerializeToString())

        class Session:
            output_names: ClassVar[list[str]] = ["sum"]
            instances = 1
            threads: ClassVar[list[int]] = []

            def run(self, feeds):
                self.threads.append(threading.get_ident())
                return session.run(["sum"], {"a": feeds["x"], "b": feeds["x"]})

        loop_thread = threading.get_ident()
        for inline_us, expect_inline in ((10_000, True), (0, False)):
            runner = Session()
            runner.threads.clear()
            b = _batcher(runner, delay_us=0, inline_max_us=inline_us)
            for i in range(20):
                out = await b.submit({"x": np.full((1, 4), i, np.float32)}, 1)
                assert np.array_equal(out.outputs["sum"], np.full((1, 4), 2 * i, np.float32))
            await b.close(1.0)
            # The first batches (costs unknown) always run in the pool.
            assert all(t != loop_thread for t in runner.threads[:8])
            assert (runner.threads[-1] == loop_thread) is expect_inline

    asyncio.run(asyncio.wait_for(go(), 20))


def test_waiting_for_the_gil_does_not_make_tiny_batches_look_slow():
    """A run's wall time also holds the wait to take the GIL back once ONNX Runtime returns (in
    the pool, from a busy event loop); a runner on the CPU is learnt at its thread's CPU time
    instead, so a tiny model still moves to the loop's thread under load (it stayed in the pool for
    good, paying the thread hop for every batch). Here a thread holds the GIL all along, with a
    20 ms switch interval: every run waits for it."""

    async def go():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(m.addmul().SerializeToString(), options)
        x = np.zeros((1, 4), np.float32)
        session.run(["sum"], {"a": x, "b": x})  # warm, as the server's sessions are before serving

        class Session:
            output_names: ClassVar[list[str]] = ["sum"]
            instances = 1
            cpu_threads = 1  # what SessionPool says of a session on the CPU with one intra-op thread
            threads: ClassVar[list[int]] = []
            walls: ClassVar[list[float]] = []

            def run(self, feeds):
                start = time.perf_counter()
                self.threads.append(threading.get_ident())
                # The GIL let go long enough for the other thread to take it (ONNX Runtime lets it
                # go while it runs; this tiny model's run is often over before anyone takes it).
                time.sleep(0.0005)
                try:
                    return session.run(["sum"], {"a": feeds["x"], "b": feeds["x"]})
                finally:
                    self.walls.append(time.perf_counter() - start)

        loop_thread = threading.get_ident()
        runner = Session()
        b = _batcher(runner, delay_us=0, inline_max_us=2000)
        for i in range(16):
            out = await b.submit({"x": np.full((1, 4), i, np.float32)}, 1)
            assert np.array_equal(out.outputs["sum"], np.full((1, 4), 2 * i, np.float32))
        await b.close(1.0)
        pooled = sorted(w for w, t in zip(runner.walls, runner.threads) if t != loop_thread)
        assert len(pooled) >= 8 and pooled[len(pooled) // 2] > 0.002  # the pool's runs waited for the GIL
        assert b.costs.predict(1) < 0.002, b.costs.predict(1)
        assert runner.threads[-1] == loop_thread

    stop = threading.Event()

    def hog() -> None:  # pure Python: holds the GIL but at forced switches
        while not stop.is_set():
            pass

    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.02)
    hogging = threading.Thread(target=hog, daemon=True)
    hogging.start()
    try:
        asyncio.run(asyncio.wait_for(go(), 60))
    finally:
        stop.set()
        hogging.join()
        sys.setswitchinterval(switch)


def test_a_lone_tiny_request_runs_at_once_without_queueing_and_a_late_one_is_refused():
    async def go():
        runner = SleepRunner(0, 0)
        stats = Stats()
        b = make_batcher(
            runner, ThreadPoolExecutor(1), 64, BatchingConfig(max_queue_delay_us=2000, adaptive=True), stats
        )
        assert isinstance(b, DynamicBatcher)
        for rows in [1, 2, 4, 8] * 3:  # a tiny model, all of its cost per row
            b.costs.observe(rows, 1e-6 * rows)
        loop_thread = threading.get_ident()
        out = await b.submit(_one(7), 1)
        assert np.array_equal(out.outputs["y"], np.full((1, 3), 14, np.float32))
        assert runner.threads == [loop_thread] and out.queue_s == 0.0
        assert stats.batches == [(1, 1)] and stats.depths == []  # never queued
        with pytest.raises(DeadlineExceeded):
            await b.submit(_one(8), 1, deadline=time.monotonic() - 1)
        assert len(runner.threads) == 1  # the late one did not run
        await b.close(1.0)

    asyncio.run(asyncio.wait_for(go(), 10))
