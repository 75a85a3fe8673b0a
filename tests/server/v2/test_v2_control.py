"""The Open Inference Protocol with Triton's asyncio client, statistics, repository control and the
RPCs ortserve does not implement, against the real server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from tests.server.v2.common import (
    addmul_inputs,
    infer_input,
)


def test_asyncio_client(server):
    async def main(target):
        async with triton_aio.InferenceServerClient(target) as c:
            assert await c.is_server_live() and await c.is_server_ready()
            assert await c.is_model_ready("gathered", "1")
            assert (await c.get_model_metadata("addmul")).platform == "onnxruntime_onnx"
            assert (await c.get_model_config("addmul")).config.max_batch_size == 16
            xs = [addmul_inputs(rows=1, seed=i) for i in range(8)]
            results = await asyncio.gather(
                *(c.infer("gathered", [infer_input(n, a) for n, a in x.items()]) for x in xs)
            )
            for x, r in zip(xs, results):
                np.testing.assert_array_equal(r.as_numpy("prod"), x["a"] * x["b"])

            async def requests():
                for i, x in enumerate(xs[:3]):
                    yield {
                        "model_name": "gathered",
                        "inputs": [infer_input(n, a) for n, a in x.items()],
                        "request_id": f"a{i}",
                    }

            streamed = []
            async for result, error in c.stream_infer(requests()):
                assert error is None
                streamed.append(result.get_response().id)
            assert sorted(streamed) == ["a0", "a1", "a2"]
            return (await c.get_inference_statistics("gathered")).model_stats[0]

    stats = asyncio.run(main(server.target))
    # The 8 concurrent one-row requests met in the queue (20 ms window, preferred sizes 4 and 8).
    assert stats.inference_count == 11 and stats.execution_count < 11
    assert stats.inference_stats.success.count == 11


def test_statistics_count_requests(client):
    before = client.get_inference_statistics("counted").model_stats[0]
    assert before.inference_stats.success.count == 0 and before.execution_count == 0
    for rows in (1, 2, 3):
        client.infer("counted", [infer_input(n, a) for n, a in addmul_inputs(rows=rows).items()])
    for _ in range(2):
        with pytest.raises(InferenceServerException):
            client.infer("counted", [infer_input("a", np.zeros((1, 4), np.float32))])
    (st,) = client.get_inference_statistics("counted", "1").model_stats
    assert (st.name, st.version) == ("counted", "1")
    s = st.inference_stats
    assert (s.success.count, s.fail.count, s.queue.count, s.compute_infer.count) == (3, 2, 3, 3)
    assert s.success.ns > s.compute_infer.ns > 0 and s.queue.ns > 0 and s.fail.ns > 0
    assert st.inference_count == 6 and st.execution_count == 3 and st.last_inference > 0
    assert sorted((b.batch_size, b.compute_infer.count) for b in st.batch_stats) == [(1, 1), (2, 1), (3, 1)]
    every = client.get_inference_statistics().model_stats
    assert {(x.name, x.version) for x in every} >= {("addmul", "1"), ("addmul", "2"), ("counted", "1")}
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_repository_index_load_unload(client, stub):
    index = {
        (x["name"], x.get("version", "")): x
        for x in client.get_model_repository_index(as_json=True)["models"]
    }
    assert index[("addmul", "1")]["state"] == "READY" and index[("spare", "1")]["state"] == "READY"
    inputs = [infer_input(n, a) for n, a in addmul_inputs().items()]
    client.unload_model("spare")
    assert not client.is_model_ready("spare")
    index = {(x.name, x.version): x for x in client.get_model_repository_index().models}
    assert (index[("spare", "1")].state, index[("spare", "1")].reason) == ("UNAVAILABLE", "unloaded")
    ready = {x.name for x in stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models}
    assert "spare" not in ready and "addmul" in ready
    with pytest.raises(InferenceServerException) as e:
        client.infer("spare", inputs)
    assert e.value.status() == "StatusCode.NOT_FOUND"
    client.load_model("spare")
    assert client.is_model_ready("spare")
    assert client.infer("spare", inputs).as_numpy("sum") is not None
    with pytest.raises(InferenceServerException) as e:
        client.load_model("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        client.load_model("spare", config='{"max_batch_size": 2}')
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "config" in e.value.message()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_system_shared_memory_status(),
        lambda c: c.unregister_system_shared_memory(),
        lambda c: c.get_cuda_shared_memory_status(),
        lambda c: c.get_trace_settings(),
        lambda c: c.get_log_settings(),
    ],
)
def test_unimplemented_rpcs_say_so(client, call):
    with pytest.raises(InferenceServerException) as e:
        call(client)
    assert (
        e.value.status() == "StatusCode.UNIMPLEMENTED" and "ortserve does not implement" in e.value.message()
    )
