"""Admission control (issue 10): bounds on the bytes requests in flight hold and on RPCs in flight;
over either, RESOURCE_EXHAUSTED at once, counted; health checks are never refused."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ortserve.client import AsyncClient, Client
from tests import onnx_models as m
from tests.flags_util import metric

# 3 rows of float32 [256, 256]: 768 KiB per request. The window holds a first request queued
# while the next ones arrive.
SLOW = "max_batch_size = 8\n[batching]\nmax_queue_delay_us = 3000000\npreferred_batch_sizes = [8]\n"
ROWS = np.zeros((3, 256, 256), np.float32)
A = np.ones((1, 4), np.float32)


def test_a_request_over_the_inflight_bytes_bound_is_refused_at_once(tmp_path, start_server):
    m.publish(tmp_path, "big", 1, m.slow(matmuls=1), SLOW)
    server = start_server(tmp_path, "--max-inflight-bytes", str(1 << 20))

    async def main():
        async with AsyncClient(server.target) as c:
            held = asyncio.ensure_future(c.predict("big", {"x": ROWS}, timeout=20))
            await asyncio.sleep(0.5)  # queued for the 3 s window, holding 768 KiB
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await c.predict("big", {"x": ROWS}, timeout=20)
            with pytest.raises(grpc.aio.AioRpcError) as large:
                await c.predict("big", {"x": np.zeros((5, 256, 256), np.float32)}, timeout=20)
            assert (await held)["y"].shape == ROWS.shape
            again = await c.predict("big", {"x": ROWS[:1]}, timeout=20)  # the bytes were given back
            return busy.value, large.value, again

    busy, large, again = asyncio.run(main())
    assert busy.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert busy.details().startswith(
        "server busy: requests in flight hold 0.8 MiB and this one needs 0.8 MiB"
    )
    assert large.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert large.details().startswith("request too large: its inputs hold 1.2 MiB")
    assert again["y"].shape == (1, 256, 256)
    assert metric(server, "ortserve_admission_rejected_total", reason="bytes") == 2
    assert metric(server, "ortserve_requests_total", model="big", outcome="overloaded") == 2
    assert metric(server, "ortserve_inflight_request_bytes") == 0


def test_rpcs_over_the_concurrency_bound_are_refused_and_health_still_answers(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(), SLOW)
    server = start_server(tmp_path, "--max-concurrent-rpcs", "2")

    async def main():
        async with AsyncClient(server.target) as c, grpc.aio.insecure_channel(server.target) as ch:
            held = [
                asyncio.ensure_future(c.predict("addmul", {"a": A, "b": A}, timeout=20)) for _ in range(2)
            ]
            await asyncio.sleep(0.5)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.predict("addmul", {"a": A, "b": A}, timeout=20)
            health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
            await asyncio.gather(*held)
            return e.value, health

    error, health = asyncio.run(main())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "server busy: 2 RPCs in flight, the bound is 2; retry later"
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert metric(server, "ortserve_admission_rejected_total", reason="rpcs") == 1
    with Client(server.target) as c:  # the bound frees as RPCs finish
        np.testing.assert_array_equal(c.predict("addmul", {"a": A, "b": A})["sum"], A * 2)


def test_default_bounds_follow_the_machines_memory():
    from ortserve.ops.resources import admission_limits
    from ortserve.ops.settings import Settings

    gib = 1 << 30
    assert admission_limits(Settings(), memory=16 * gib).inflight_bytes == gib
    assert admission_limits(Settings(workers=4), memory=16 * gib).inflight_bytes == gib // 4
    assert admission_limits(Settings(), memory=16 * gib).concurrent_rpcs == 4096
    small = admission_limits(Settings(), memory=512 << 20)
    assert small.inflight_bytes == 64 << 20 and small.concurrent_rpcs == 256  # at least one message
    given = admission_limits(Settings(max_inflight_bytes=5 << 20, max_concurrent_rpcs=7))
    assert (given.inflight_bytes, given.concurrent_rpcs) == (5 << 20, 7)
