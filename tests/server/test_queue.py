"""Queue limits and deadlines: a long max_queue_delay keeps requests queued so the tests can
watch them expire or fill the queue."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import AsyncClient, Client
from ortserve.testing import ServerProcess
from tests import onnx_models as m

SLOW_CONFIG = """
max_batch_size = 64
[batching]
max_queue_delay_us = 1500000
max_queue_size = 4
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    m.publish(root, "slow", 1, m.addmul(), SLOW_CONFIG)
    s = ServerProcess(root, "--gil-switch-interval-us", "300")
    yield s
    assert s.stop() == 0


def batch_rows(server) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "ortserve_batch_size_sum" and s.labels.get("model") == "slow":
                return s.value
    return 0.0


def test_deadline_expiring_in_queue_is_answered_and_never_run(server):
    before = batch_rows(server)
    a = np.ones((1, 4), np.float32)
    with Client(server.target) as c:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            c.predict("slow", {"a": a, "b": a}, timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.2  # answered at its deadline, not at the batch window's end
        time.sleep(1.6)  # past the batch window: the expired request must not have run
        assert batch_rows(server) == before
        # A request with time to spare is served after the window.
        np.testing.assert_array_equal(c.predict("slow", {"a": a, "b": a}, timeout=10)["sum"], a * 2)
        assert batch_rows(server) == before + 1


def test_full_queue_rejects_at_once_and_queued_requests_complete(server):
    async def main():
        async with AsyncClient(server.target) as c:
            rows = [np.full((1, 4), i, np.float32) for i in range(4)]
            queued = [asyncio.ensure_future(c.predict("slow", {"a": r, "b": r}, timeout=10)) for r in rows]
            await asyncio.sleep(0.3)  # all four are in the queue now (the window is 1.5 s)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.predict("slow", {"a": rows[0], "b": rows[0]}, timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_queue_size is 4" in e.value.details()
            assert time.monotonic() - started < 0.5
            results = await asyncio.gather(*queued)
            for r, res in zip(rows, results):
                np.testing.assert_array_equal(res["sum"], r * 2)

    asyncio.run(main())


def test_the_server_runs_with_the_gil_switch_interval_it_was_given(server):
    ready = server.wait_log("serving gRPC")
    assert ready["gil_switch_interval_us"] == 300
