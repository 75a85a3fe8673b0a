"""The edge's seams, in process: the interceptor chain sees every RPC kind once and can refuse a
call before it is decoded; core hooks observe every request with a transport-neutral outcome."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ortserve._proto.inference import grpc_service_pb2 as v2pb
from ortserve._proto.inference import grpc_service_pb2_grpc as v2grpc
from ortserve._proto.ortserve.v1 import admin_pb2, admin_pb2_grpc
from ortserve._proto.ortserve.v1 import inference_pb2 as v1pb
from ortserve.client import AsyncClient
from ortserve.core import Completed
from ortserve.edge.interceptors import Interceptor, Rpc
from ortserve.errors import Unavailable
from ortserve.ops.settings import Settings
from tests import onnx_models as m
from tests.server.inprocess import run_in_app

A = np.ones((1, 4), np.float32)


class Recorder(Interceptor):
    def __init__(self) -> None:
        self.entered: list[Rpc] = []
        self.left: list[tuple[str, str]] = []

    async def enter(self, rpc: Rpc, context) -> None:
        self.entered.append(rpc)
        if rpc.group == "flags":
            raise Unavailable("flags are closed for this test")

    def leave(self, rpc: Rpc, context, error) -> None:
        self.left.append((rpc.method, type(error).__name__ if error else ""))


class Events:
    def __init__(self) -> None:
        self.events: list[Completed] = []

    def on_complete(self, event: Completed) -> None:
        self.events.append(event)


@pytest.fixture
def repo(tmp_path):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    return tmp_path


def run_app(repo, links, body):
    settings = Settings(model_repository=repo, port=0, metrics_port=-1, flags_poll_interval=0)
    run_in_app(settings, body, links=links)


def test_the_chain_sees_unary_and_streaming_rpcs_once_and_refuses_before_decoding(repo):
    recorder = Recorder()

    async def body(app, target):
        async with AsyncClient(target) as client:
            assert (await client.predict("addmul", {"a": A, "b": A}))["sum"][0, 0] == 2.0
        async with grpc.aio.insecure_channel(target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()

            def one():
                r = v2pb.ModelInferRequest(model_name="addmul")
                for name in ("a", "b"):
                    r.inputs.add(name=name, datatype="FP32", shape=[1, 4])
                    r.raw_input_contents.append(A.tobytes())
                return r

            async def requests():
                for _ in range(3):
                    yield one()

            answers = [a async for a in v2grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(requests())]
            assert len(answers) == 3 and not any(a.error_message for a in answers)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await admin_pb2_grpc.AdminStub(channel).GetFlags(admin_pb2.GetFlagsRequest())
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "closed for this test" in e.value.details()

    run_app(repo, [recorder], body)
    seen = [(r.method.rsplit("/", 1)[-1], r.group, r.streaming) for r in recorder.entered]
    assert seen == [
        ("Predict", "inference", False),
        ("Watch", "health", True),
        ("ModelStreamInfer", "inference", True),  # once per stream, not per message
        ("GetFlags", "flags", False),
    ]
    methods = [m.rsplit("/", 1)[-1] for m, _ in recorder.left]
    assert sorted(methods) == ["GetFlags", "ModelStreamInfer", "Predict", "Watch"]
    assert dict((m.rsplit("/", 1)[-1], err) for m, err in recorder.left)["GetFlags"] == "Unavailable"


def test_core_hooks_see_every_request_with_its_outcome(repo):
    events = Events()

    async def body(app, target):
        app.core.hooks.add(events)
        async with AsyncClient(target) as client:
            await client.predict("addmul", {"a": A, "b": A}, request_id="ok-1")
            for inputs, model in (({"a": A}, "addmul"), ({"a": A, "b": A}, "nope")):
                with pytest.raises(grpc.aio.AioRpcError):
                    await client.predict(model, inputs)
            # a tensor header that does not parse fails before the core: counted through reject
            bad = v1pb.PredictRequest(model="addmul")
            bad.inputs.add(name="a", dtype="float99", shape=[1, 4], data=b"\0" * 16)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await client.stub.Predict(bad)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown dtype" in e.value.details()
            # data that does not fit its header is found by the core, after routing (values are read last)
            short = v1pb.PredictRequest(model="addmul")
            for name in ("a", "b"):
                short.inputs.add(name=name, dtype="float32", shape=[1, 4], data=b"\0" * 15)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await client.stub.Predict(short)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "15 bytes" in e.value.details()

    run_app(repo, [], body)
    outcomes = [
        (e.request.model, e.outcome, e.route.version.version if e.route else None) for e in events.events
    ]
    assert outcomes == [
        ("addmul", "ok", "1"),
        ("addmul", "invalid_input", "1"),
        ("nope", "not_found", None),
        ("addmul", "invalid_input", None),
        ("addmul", "invalid_input", "1"),
    ]
    ok = events.events[0]
    assert ok.request.request_id == "ok-1" and ok.response is not None and ok.request.api == "v1"
    assert all(e.duration_s >= 0 for e in events.events)
