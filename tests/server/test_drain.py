"""SIGTERM drains without losing a request the server received: health NOT_SERVING, an optional
delay while still serving, then new RPCs UNAVAILABLE while every received one is answered (open
streams too), then the server stops; the grace period bounds it all (issue 10, defect 2)."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ortserve._proto.inference import grpc_service_pb2 as v2pb
from ortserve._proto.inference import grpc_service_pb2_grpc as v2grpc
from ortserve.client import AsyncClient
from tests import onnx_models as m

A = np.ones((1, 4), np.float32)
WINDOW = "max_batch_size = 64\n[batching]\nmax_queue_delay_us = 300000\npreferred_batch_sizes = [64]\n"


def _code(result) -> str:
    if isinstance(result, grpc.aio.AioRpcError):
        return result.code().name
    if isinstance(result, BaseException):
        raise result
    return "OK"


def _burst(server, delay_s: float = 0.002) -> list[str]:
    """48 concurrent 64-row requests, SIGTERM ``delay_s`` after they are sent; their status codes."""
    rows = np.ones((64, 4), np.float32)

    async def main():
        async with AsyncClient(server.target) as c:
            await c.predict("addmul", {"a": A, "b": A})  # connected and warm
            calls = [
                asyncio.ensure_future(c.predict("addmul", {"a": rows, "b": rows}, timeout=30))
                for _ in range(48)
            ]
            await asyncio.sleep(delay_s)
            server.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls, return_exceptions=True)

    return [_code(r) for r in asyncio.run(main())]


def test_sigterm_mid_burst_answers_every_request_received(tmp_path, start_server):
    """Each request of the burst is answered: OK, or UNAVAILABLE (retryable) when the drain had
    begun before the server took it; none ends CANCELLED."""
    m.publish(tmp_path, "addmul", 1, m.addmul(), WINDOW)
    server = start_server(tmp_path, "--grace-period", "20")
    codes = _burst(server)
    assert server.proc.wait(40) == 0
    assert "CANCELLED" not in codes, codes
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    server.wait_log("drained: every RPC received was answered")


def test_with_a_drain_delay_the_whole_burst_is_served(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(), WINDOW)
    server = start_server(tmp_path, "--grace-period", "20", "--drain-delay", "1")
    codes = _burst(server)
    assert server.proc.wait(40) == 0
    assert codes == ["OK"] * 48, codes


def test_a_health_checking_client_sending_all_along_loses_nothing(tmp_path, start_server):
    """A client that keeps sending through SIGTERM, with gRPC client-side health checking
    (``AsyncClient(health_check=True)``): it stops sending once health is NOT_SERVING, so the
    server stops with nothing on its way and no request ends CANCELLED or with its connection
    dropped; those after the turn fail at the client, never sent (or, for the few on their way,
    are refused by the drain)."""
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--grace-period", "20")

    async def main():
        outcomes: list[str] = []
        async with AsyncClient(server.target, health_check=True) as c:

            async def one() -> None:
                try:
                    await c.predict("addmul", {"a": A, "b": A}, timeout=30)
                    outcomes.append("OK")
                except grpc.aio.AioRpcError as e:
                    outcomes.append(f"{e.code().name}: {e.details()}")

            running = set()
            for i in range(400):  # ~2 s at 200 a second, SIGTERM after 0.5 s
                if i == 100:
                    server.proc.send_signal(signal.SIGTERM)
                task = asyncio.ensure_future(one())
                running.add(task)
                task.add_done_callback(running.discard)
                await asyncio.sleep(0.005)
            await asyncio.gather(*running)
        return outcomes

    outcomes = asyncio.run(main())
    assert server.proc.wait(40) == 0
    # served before the signal (not all 100 sent before it: the last ones may reach a draining server)
    assert outcomes.count("OK") >= 50, outcomes[:5]
    # NOT_SERVING, then the server gone: the channel's load balancing sent nothing
    never_sent = ("backend unhealthy", "Connection refused", "connections to all backends failing")
    for outcome in set(outcomes) - {"OK"}:
        assert outcome.startswith("UNAVAILABLE"), outcome  # never CANCELLED
        assert "shutting down" in outcome or any(why in outcome for why in never_sent), outcome
    assert any("backend unhealthy" in o for o in outcomes), "the client never saw NOT_SERVING"


def test_drain_delay_serves_on_with_health_not_serving_then_refuses(tmp_path, start_server):
    """During --drain-delay health says NOT_SERVING and requests are served; then, while a request
    received earlier is still queued (a 13 s batching window: it outlasts the 8 s delay by 5 s, so the
    server cannot stop before the new request comes, even on a busy machine), a new one gets UNAVAILABLE."""
    slow = "max_batch_size = 4\n[batching]\nmax_queue_delay_us = 13000000\npreferred_batch_sizes = [4]\n"
    m.publish(tmp_path, "addmul", 1, m.addmul())
    m.publish(tmp_path, "queued", 1, m.addmul(), slow)
    # The delay is long enough for the steps below on a loaded machine; the queued request must
    # reach the server before it ends (checked), or it would be refused, not drained.
    server = start_server(tmp_path, "--drain-delay", "8", "--grace-period", "30")

    async def main():
        async with AsyncClient(server.target) as c, grpc.aio.insecure_channel(server.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            ok = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert ok.status == health_pb2.HealthCheckResponse.SERVING
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.wait_log, "--drain-delay")
            status = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            model = await health.Check(health_pb2.HealthCheckRequest(service="addmul"))
            assert model.status == health_pb2.HealthCheckResponse.NOT_SERVING
            result = await c.predict("addmul", {"a": A, "b": A}, timeout=5)  # still served
            np.testing.assert_array_equal(result["sum"], A * 2)
            queued = asyncio.ensure_future(c.predict("queued", {"a": A, "b": A}, timeout=30))
            assert await asyncio.to_thread(_queued, server), "the queued request never reached the server"
            assert not server.logs("new RPCs get UNAVAILABLE"), (
                "the drain delay ended before the request came"
            )
            await asyncio.to_thread(server.wait_log, "new RPCs get UNAVAILABLE", 20)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.predict("addmul", {"a": A, "b": A}, timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in e.value.details()
            np.testing.assert_array_equal((await queued)["sum"], A * 2)

    asyncio.run(main())
    assert server.proc.wait(30) == 0


def _queued(server, timeout: float = 10.0) -> bool:
    """Whether the "queued" model's queue holds a request within ``timeout`` (its /metrics)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
        if 'ortserve_queue_depth{model="queued",version="1"} 1.0' in text:
            return True
        time.sleep(0.05)
    return False


def _infer(i: int) -> v2pb.ModelInferRequest:
    x = np.full((1, 4), i, np.float32).tobytes()
    req = v2pb.ModelInferRequest(model_name="addmul", id=str(i))
    for name in ("a", "b"):
        req.inputs.add(name=name, datatype="FP32", shape=[1, 4])
        req.raw_input_contents.append(x)
    return req


def test_an_open_stream_is_answered_then_ended_unavailable(tmp_path, start_server):
    """A ModelStreamInfer stream left open by its client: the requests it sent are answered, then
    the stream ends UNAVAILABLE (not CANCELLED at the end of the grace period)."""
    m.publish(tmp_path, "addmul", 1, m.addmul(), WINDOW)
    server = start_server(tmp_path, "--grace-period", "30")

    async def main():
        async with grpc.aio.insecure_channel(server.target) as ch:
            sent = asyncio.Queue()

            async def requests():
                for i in range(3):
                    yield _infer(i)
                await sent.put(None)
                await asyncio.sleep(3600)  # the client keeps its side open

            call = v2grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(requests())
            await sent.get()
            await asyncio.sleep(0.1)
            server.proc.send_signal(signal.SIGTERM)
            answers = []
            with pytest.raises(grpc.aio.AioRpcError) as e:
                async for answer in call:
                    answers.append(answer)
            return answers, e.value

    answers, error = asyncio.run(main())
    assert sorted(a.infer_response.id for a in answers) == ["0", "1", "2"]
    assert all(a.error_message == "" for a in answers)
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert server.proc.wait(30) == 0
    server.wait_log("drained: every RPC received was answered")


def test_grace_period_bounds_the_drain_and_says_what_it_cut(tmp_path, start_server):
    slow = "max_batch_size = 4\n[batching]\nmax_queue_delay_us = 20000000\npreferred_batch_sizes = [4]\n"
    m.publish(tmp_path, "addmul", 1, m.addmul(), slow)
    server = start_server(tmp_path, "--grace-period", "1")

    async def main():
        async with AsyncClient(server.target) as c:
            call = asyncio.ensure_future(c.predict("addmul", {"a": A, "b": A}, timeout=30))
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(call, return_exceptions=True)

    asyncio.run(main())
    assert server.proc.wait(30) == 0
    cut = server.wait_log("grace period over")
    assert cut["in_flight"] == 1
