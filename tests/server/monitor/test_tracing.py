"""--tracing in process (an in-memory span exporter): a span per RPC from OpenTelemetry's gRPC aio
instrumentation, an ortserve.infer span per request under it (ModelStreamInfer included, which that
instrumentation mishandles for some handlers), an ortserve.batch span linked to its requests; and no
OpenTelemetry import at all when tracing is off."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ortserve._proto.inference import grpc_service_pb2 as pb2
from ortserve._proto.inference import grpc_service_pb2_grpc as pb2_grpc
from ortserve.client import AsyncClient
from ortserve.ops.app import App
from ortserve.ops.settings import Settings
from tests.server.monitor.conftest import copy_version

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, demo_version):
    root = tmp_path_factory.mktemp("repo")
    copy_version(
        demo_version,
        root,
        "1",
        'default_version = "1"\nmax_batch_size = 64\n[batching]\nmax_queue_delay_us = 20000\n',
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # before the App: it uses the provider it finds
    return root


def v2_request(x: np.ndarray, rid: str) -> pb2.ModelInferRequest:
    request = pb2.ModelInferRequest(model_name="digits", id=rid)
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


async def scenario(repo) -> None:
    app = App(Settings(model_repository=repo, port=0, metrics_port=-1, tracing=True, drift_sample_rate=0))
    await app.startup()
    try:
        target = f"127.0.0.1:{app.port}"
        x = np.zeros((1, 64), np.float32)
        async with AsyncClient(target) as c:  # three at once: they share a batch (20 ms window)
            await asyncio.gather(*(c.predict("digits", {"input": x}, request_id=f"p{i}") for i in range(3)))
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
            await stub.ModelInfer(v2_request(x, "unary"))
            answers = [
                a async for a in stub.ModelStreamInfer(iter([v2_request(x, f"s{i}") for i in range(4)]))
            ]
        assert sorted(a.infer_response.id for a in answers) == [f"s{i}" for i in range(4)]
        assert not any(a.error_message for a in answers)
    finally:
        app.handle_exit()
        await app.shutdown()


def test_spans_per_rpc_request_and_batch(repo):
    EXPORTER.clear()
    asyncio.run(scenario(repo))
    spans = EXPORTER.get_finished_spans()
    rpcs = {s.name: s for s in spans if s.kind == trace.SpanKind.SERVER}
    assert {
        "/ortserve.v1.Inference/Predict",
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelStreamInfer",
    } <= set(rpcs)
    infers = [s for s in spans if s.name == "ortserve.infer"]
    by_id = {s.attributes["ortserve.request_id"]: s for s in infers}
    assert set(by_id) == {"p0", "p1", "p2", "unary", "s0", "s1", "s2", "s3"}
    stream = rpcs["/inference.GRPCInferenceService/ModelStreamInfer"]
    for rid in ("s0", "s1", "s2", "s3"):  # one span per request of the stream, all under the stream's span
        assert by_id[rid].parent.span_id == stream.context.span_id
        assert by_id[rid].context.trace_id == stream.context.trace_id
    assert by_id["unary"].parent.span_id == rpcs["/inference.GRPCInferenceService/ModelInfer"].context.span_id
    for s in infers:
        assert s.attributes["ortserve.outcome"] == "ok" and s.attributes["ortserve.version"] == "1"
    batches = [s for s in spans if s.name == "ortserve.batch"]
    linked = {link.context.span_id for b in batches for link in b.links}
    assert linked == {s.context.span_id for s in infers}  # every request is linked from the batch it ran in
    assert sum(b.attributes["ortserve.batch.rows"] for b in batches) == 8
    shared = max(batches, key=lambda b: len(b.links))
    assert len(shared.links) >= 2 and shared.attributes["ortserve.model"] == "digits"


def test_tracing_off_imports_no_opentelemetry(repo):
    code = (
        "import asyncio, sys\nfrom pathlib import Path\n"
        "from ortserve.ops.app import App\nfrom ortserve.ops.settings import Settings\n"
        f"app = App(Settings(model_repository=Path({str(repo)!r}), port=0, metrics_port=-1))\n"
        "async def main():\n    await app.startup(); app.handle_exit(); await app.shutdown()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
