"""Predict end to end against the real server: results, batching, validation errors."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import AsyncClient, Client
from ortserve.optimize.demo import build as build_demo
from tests import onnx_models as m

NOBATCH_CONFIG = """
max_batch_size = 8
[batching]
enabled = false
"""
ADDMUL_CONFIG = """
max_batch_size = 16
[batching]
max_queue_delay_us = 20000
"""
PAIR_CONFIG = """
max_batch_size = 8
max_input_elements = 1000
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    build_demo(root, quiet=True)
    m.publish(root, "addmul", 1, m.addmul(), ADDMUL_CONFIG)
    m.publish(root, "pair", 1, m.pair(), PAIR_CONFIG)
    m.publish(root, "fixed", 1, m.fixed())
    m.publish(root, "strings", 1, m.strings())
    m.publish(root, "nobatch", 1, m.addmul(), NOBATCH_CONFIG)
    return root


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target) as c:
        yield c


def metric_samples(server, name):
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_digits_predict_equals_onnxruntime(repo, client):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x[:50].astype(np.float32)
    session = ort.InferenceSession(
        str(repo / "digits" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    logits, probabilities, label = session.run(None, {"input": x})
    result = client.predict("digits", {"input": x})
    assert result.version == "1" and result.model == "digits"
    np.testing.assert_array_equal(result["logits"], logits)
    np.testing.assert_array_equal(result["probabilities"], probabilities)
    np.testing.assert_array_equal(result["label"], label)
    assert (result["label"] == y[:50]).mean() > 0.9


def test_async_client_and_output_filter(server):
    async def main():
        async with AsyncClient(server.target) as c:
            a = np.ones((2, 4), np.float32)
            r = await c.predict("addmul", {"a": a, "b": a * 3}, outputs=["prod"], request_id="abc-1")
            assert list(r.outputs) == ["prod"] and r.request_id == "abc-1"
            np.testing.assert_array_equal(r["prod"], a * 3)

    asyncio.run(main())


def test_concurrent_rows_are_batched_and_returned_to_their_callers(server):
    before = metric_samples(server, "ortserve_batch_size_count").get(
        (("model", "addmul"), ("version", "1")), 0
    )
    before_sum = metric_samples(server, "ortserve_batch_size_sum").get(
        (("model", "addmul"), ("version", "1")), 0
    )

    async def main():
        async with AsyncClient(server.target) as c:
            rows = [np.full((1, 4), i, np.float32) + np.arange(4, dtype=np.float32) for i in range(32)]
            results = await asyncio.gather(*(c.predict("addmul", {"a": r, "b": r * 2}) for r in rows))
            for r, res in zip(rows, results):
                np.testing.assert_array_equal(res["sum"], r * 3)
                np.testing.assert_array_equal(res["prod"], r * r * 2)

    asyncio.run(main())
    batches = (
        metric_samples(server, "ortserve_batch_size_count")[(("model", "addmul"), ("version", "1"))] - before
    )
    rows = (
        metric_samples(server, "ortserve_batch_size_sum")[(("model", "addmul"), ("version", "1"))]
        - before_sum
    )
    assert rows == 32
    assert batches < 32, f"32 one-row requests ran in {batches} batches: no batch larger than 1 formed"


def test_batching_turned_off_runs_each_request_alone(server):
    key = (("model", "nobatch"), ("version", "1"))

    async def main():
        async with AsyncClient(server.target) as c:
            rows = [np.full((2, 4), i, np.float32) for i in range(12)]
            results = await asyncio.gather(*(c.predict("nobatch", {"a": r, "b": r}) for r in rows))
            for r, res in zip(rows, results):
                np.testing.assert_array_equal(res["sum"], r * 2)

    asyncio.run(main())
    assert metric_samples(server, "ortserve_batch_size_count")[key] == 12
    assert metric_samples(server, "ortserve_batch_size_sum")[key] == 24


def test_failing_batch_fails_only_its_own_requests(server):
    async def main():
        async with AsyncClient(server.target) as c:
            good = [
                c.predict("pair", {"x": np.ones((1, 3), np.float32), "y": np.ones((1, 3), np.float32) * i})
                for i in range(6)
            ]
            bad = [
                c.predict("pair", {"x": np.ones((1, 3), np.float32), "y": np.ones((1, 2), np.float32)})
                for _ in range(3)
            ]
            return await asyncio.gather(*good, *bad, return_exceptions=True)

    results = asyncio.run(main())
    for i, r in enumerate(results[:6]):
        np.testing.assert_array_equal(r["out"], np.ones((1, 3)) + i)
    for r in results[6:]:
        assert isinstance(r, grpc.RpcError) and r.code() == grpc.StatusCode.INTERNAL
        assert "inference failed" in r.details()


def test_model_without_batch_dimension(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(client.predict("fixed", {"x": x})["y"], x * 2)
    md = client.metadata("fixed")
    assert md.max_batch_size == 0 and not md.dynamic_batching and list(md.inputs[0].shape) == [2, 3]


def test_string_tensors(client):
    text = np.array(["hello", "wörld", ""], dtype=object)
    np.testing.assert_array_equal(client.predict("strings", {"text": text})["same"], text)
    raw = np.array([b"bytes in", b"bytes out"], dtype=object)
    np.testing.assert_array_equal(client.predict("strings", {"text": raw})["same"], ["bytes in", "bytes out"])


def test_list_models_and_metadata(client):
    names = {mm.name: list(mm.versions) for mm in client.list_models().models}
    assert names == {
        "addmul": ["1"],
        "digits": ["1"],
        "fixed": ["1"],
        "nobatch": ["1"],
        "pair": ["1"],
        "strings": ["1"],
    }
    md = client.metadata("digits")
    assert md.providers == ["CPUExecutionProvider"] and md.max_batch_size == 64 and len(md.sha256) == 64
    assert [(t.name, t.dtype, list(t.shape)) for t in md.inputs] == [("input", "float32", [-1, 64])]


def test_health_overall_and_per_model(server):
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == serving
        assert stub.Check(health_pb2.HealthCheckRequest(service="digits")).status == serving
        with pytest.raises(grpc.RpcError) as e:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_every_service(server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    services = [
        "ortserve.v1.Inference",
        "ortserve.v1.Admin",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    with grpc.insecure_channel(server.target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        asks = [reflection_pb2.ServerReflectionRequest(list_services="")]
        asks += [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in services]
        listed, *described = stub.ServerReflectionInfo(iter(asks))
    assert set(services) <= {s.name for s in listed.list_services_response.service}
    for name, resp in zip(services, described):
        assert resp.WhichOneof("message_response") == "file_descriptor_response", (name, resp.error_response)
