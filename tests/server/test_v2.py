"""The Open Inference Protocol (KServe V2, Triton's gRPC service) end to end, with Triton's own
clients (sync, asyncio, streaming) against the real server.

tritonclient's generated modules and the server's define the same ``inference.*`` protobuf
symbols, so this file never imports ``server._proto.inference``: requests that tritonclient
cannot build (typed contents, malformed ones) are built with ``tritonclient.grpc.service_pb2``.

The ``kserve`` package's gRPC client is not tested: ``pip install kserve`` (0.21) would downgrade
protobuf 7 -> 6 and grpcio-tools in this environment, and its generated module defines the same
``inference.*`` symbols as tritonclient's, so it could not share this process anyway.
"""

from __future__ import annotations

import asyncio
import json
import queue
import struct

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from tests import onnx_models as m

ADDMUL_CONFIG = """
max_batch_size = 16
[batching]
max_queue_delay_us = 20000
preferred_batch_sizes = [4, 8]
max_queue_size = 64
"""

# "routed" goes to its canary version for French requests and for the targeting key "vip".
FLAGS = {
    "flags": {
        "routed": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "canary": "2"},
            "targeting": {
                "if": [
                    {"or": [{"==": [{"var": "country"}, "fr"]}, {"==": [{"var": "targetingKey"}, "vip"]}]},
                    "canary",
                    "stable",
                ]
            },
        }
    }
}

# Every numeric V2 datatype, with tritonclient's numpy dtype and the matching ONNX element type.
TYPES = {
    t: (helper.np_dtype_to_tensor_dtype(np.dtype(triton_to_np_dtype(t))), np.dtype(triton_to_np_dtype(t)))
    for t in [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    ]
}
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def identities(datatypes):
    """out_T = in_T for each datatype; with FP16, also half_as_float = Cast(in_FP16, float)."""
    nodes = [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in datatypes]
    inputs = [helper.make_tensor_value_info(f"in_{t}", TYPES[t][0], ["batch", 3]) for t in datatypes]
    outputs = [helper.make_tensor_value_info(f"out_{t}", TYPES[t][0], ["batch", 3]) for t in datatypes]
    if "FP16" in datatypes:
        nodes.append(helper.make_node("Cast", ["in_FP16"], ["half_as_float"], to=TensorProto.FLOAT))
        outputs.append(helper.make_tensor_value_info("half_as_float", TensorProto.FLOAT, ["batch", 3]))
    return m._model(nodes, inputs, outputs)


def bf16_model():
    """as_float = Cast(x, float), same = x; x bfloat16 [batch, 4]."""
    bf16 = TensorProto.BFLOAT16
    return m._model(
        [
            helper.make_node("Cast", ["x"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Identity", ["x"], ["same"]),
        ],
        [helper.make_tensor_value_info("x", bf16, ["batch", 4])],
        [
            helper.make_tensor_value_info("as_float", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("same", bf16, ["batch", 4]),
        ],
    )


def random_inputs(datatypes, rows=2, seed=2):
    rng = np.random.default_rng(seed)
    x = {}
    for t in datatypes:
        dt = TYPES[t][1]
        if dt == np.bool_:
            x[f"in_{t}"] = rng.integers(0, 2, (rows, 3)).astype(dt)
        elif np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            x[f"in_{t}"] = rng.integers(info.min, info.max, (rows, 3), dtype=dt, endpoint=True)
        else:
            x[f"in_{t}"] = rng.standard_normal((rows, 3)).astype(dt)
    return x


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    m.publish(root, "addmul", 1, m.addmul(), ADDMUL_CONFIG)
    m.publish(root, "addmul", 2, m.addmul(offset=100.0))
    m.publish(root, "counted", 1, m.addmul(), "max_batch_size = 8\n")
    m.publish(root, "spare", 1, m.addmul(offset=1.0))
    m.publish(root, "types", 1, identities(list(TYPED_FIELDS)))
    m.publish(root, "half", 1, identities(["FP16"]))
    m.publish(root, "gathered", 1, m.addmul(), ADDMUL_CONFIG)
    m.publish(root, "bf16", 1, bf16_model())
    m.publish(root, "streamed", 1, m.addmul(), "[batching]\nmax_queue_size = 1024\n")
    m.publish(root, "strings", 1, m.strings())
    m.publish(root, "slow", 1, m.slow(16, 512), "max_batch_size = 4\n[batching]\nmax_queue_delay_us = 0\n")
    m.publish(root, "fixed", 1, m.fixed(), '[versions]\npolicy = "latest 1"\n')
    for version, offset in (("1", 0.0), ("2", 100.0)):
        m.publish(root, "routed", version, m.addmul(offset), 'default_version = "1"\n')
    (root / "flags.json").write_text(json.dumps(FLAGS))
    return root


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.target)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server):
    """A bare V2 stub, for requests tritonclient does not build (typed contents, malformed ones)."""
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def session(repo, name, version=1):
    return ort.InferenceSession(
        str(repo / name / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def infer_input(name, array, datatype=None):
    i = triton.InferInput(name, list(array.shape), datatype or triton.np_to_triton_dtype(array.dtype))
    i.set_data_from_numpy(array)
    return i


def addmul_inputs(rows=2, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((rows, 4)).astype(np.float32) for n in ("a", "b")}


def raw_request(model, arrays, **fields):
    """A ModelInferRequest with raw contents, built by hand (numeric arrays only)."""
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, a in arrays.items():
        req.inputs.add(name=name, datatype=triton.np_to_triton_dtype(a.dtype), shape=a.shape)
        req.raw_input_contents.append(a.tobytes())
    return req


def typed_request(model, arrays, **fields):
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, a in arrays.items():
        datatype = "BYTES" if a.dtype == object else triton.np_to_triton_dtype(a.dtype)
        t = req.inputs.add(name=name, datatype=datatype, shape=a.shape)
        if datatype == "BYTES":
            t.contents.bytes_contents.extend(s.encode() for s in a.reshape(-1))
        elif datatype in TYPED_FIELDS:  # FP16 has no typed field: left empty
            getattr(t.contents, TYPED_FIELDS[datatype]).extend(a.reshape(-1).tolist())
    return req


def outputs_of(response):
    """Decode a ModelInferResponse's raw outputs with tritonclient's own result class."""
    result = triton.InferResult(response)
    return {o.name: result.as_numpy(o.name) for o in response.outputs}


# -- health, metadata, config --------------------------------------------------------------------


def test_live_ready_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("addmul") and client.is_model_ready("addmul", "2")
    assert not client.is_model_ready("addmul", "7") and not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta.name == "ortserve" and meta.version
    assert {"model_repository", "model_configuration", "statistics", "schedule_policy"} <= set(
        meta.extensions
    )
    md = client.get_model_metadata("addmul")
    assert md.name == "addmul" and list(md.versions) == ["1", "2"] and md.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [
        ("a", "FP32", [-1, 4]),
        ("b", "FP32", [-1, 4]),
    ]
    assert [t.name for t in md.outputs] == ["sum", "prod"]
    assert list(client.get_model_metadata("addmul", "2").versions) == ["2"]
    strings = client.get_model_metadata("strings", as_json=True)
    assert strings["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}]
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND" and "nope" in e.value.message()


def test_model_config(client):
    c = client.get_model_config("addmul").config
    assert (c.name, c.platform, c.backend, c.max_batch_size) == (
        "addmul",
        "onnxruntime_onnx",
        "onnxruntime",
        16,
    )
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == [
        ("a", mc.TYPE_FP32, [4]),
        ("b", mc.TYPE_FP32, [4]),
    ]
    assert [o.name for o in c.output] == ["sum", "prod"]
    assert c.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert c.dynamic_batching.max_queue_delay_microseconds == 20000
    assert list(c.dynamic_batching.preferred_batch_size) == [4, 8]
    assert c.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert [(g.kind, g.count) for g in c.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    assert c.version_policy.WhichOneof("policy_choice") == "all"
    assert c.parameters["default_version"].string_value == "2"
    fixed = client.get_model_config("fixed").config
    assert fixed.max_batch_size == 0 and list(fixed.input[0].dims) == [2, 3]
    assert fixed.WhichOneof("scheduling_choice") is None
    assert fixed.version_policy.latest.num_versions == 1
    half = client.get_model_config("half", as_json=True)["config"]
    assert [i["data_type"] for i in half["input"]] == ["TYPE_FP16"]
    assert client.get_model_config("strings").config.input[0].data_type == mc.TYPE_STRING


# -- inference -----------------------------------------------------------------------------------


def test_infer_raw_equals_onnxruntime(repo, client):
    x = addmul_inputs(rows=5)
    expected = dict(zip(["sum", "prod"], session(repo, "addmul", 1).run(None, x)))
    result = client.infer(
        "addmul", [infer_input(n, a) for n, a in x.items()], model_version="1", request_id="r-1"
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("addmul", "1", "r-1")
    assert len(response.raw_output_contents) == 2 and not response.outputs[0].HasField("contents")
    for name, want in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), want)
    # No version named: the default (highest) version serves, and says so.
    result = client.infer("addmul", [infer_input(n, a) for n, a in x.items()])
    assert result.get_response().model_version == "2" and result.get_response().id == ""
    np.testing.assert_array_equal(result.as_numpy("sum"), expected["sum"] + 100)


def test_infer_typed_contents_equals_raw(repo, stub):
    x = addmul_inputs(rows=3, seed=1)
    typed = outputs_of(stub.ModelInfer(typed_request("addmul", x, model_version="1", id="typed")))
    raw = outputs_of(stub.ModelInfer(raw_request("addmul", x, model_version="1")))
    expected = session(repo, "addmul").run(None, x)
    for name, want in zip(["sum", "prod"], expected):
        np.testing.assert_array_equal(typed[name], want)
        np.testing.assert_array_equal(raw[name], want)


def expected_outputs(repo, model, x):
    sess = session(repo, model)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, x)))


@pytest.mark.parametrize("model, datatypes", [("types", list(TYPED_FIELDS)), ("half", ["FP16"])])
def test_every_datatype_raw(repo, client, model, datatypes):
    x = random_inputs(datatypes)
    result = client.infer(model, [infer_input(n, a) for n, a in x.items()])
    datatype_of = {o.name: o.datatype for o in result.get_response().outputs}
    for name, want in expected_outputs(repo, model, x).items():
        got = result.as_numpy(name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want)
        if name.startswith("out_"):
            assert datatype_of[name] == name[4:]


def test_every_typed_datatype(repo, stub):
    x = random_inputs(TYPED_FIELDS, seed=3)
    got = outputs_of(stub.ModelInfer(typed_request("types", x)))
    for name, want in expected_outputs(repo, "types", x).items():
        assert got[name].dtype == want.dtype, name
        np.testing.assert_array_equal(got[name], want)


def test_bf16(client):
    # Values bfloat16 holds exactly, so tritonclient's truncation and a rounding cast agree.
    x = np.array([[1.5, 2.25, -4.0, 0.15625], [3.0, 0.0, -0.5, 256.0]], np.float32)
    result = client.infer("bf16", [infer_input("x", x, "BF16")])
    assert {o.name: o.datatype for o in result.get_response().outputs} == {"as_float": "FP32", "same": "BF16"}
    np.testing.assert_array_equal(result.as_numpy("as_float"), x)
    np.testing.assert_array_equal(result.as_numpy("same").astype(np.float32), x)
    assert client.get_model_metadata("bf16").inputs[0].datatype == "BF16"
    assert client.get_model_config("bf16").config.input[0].data_type == mc.TYPE_BF16


def test_model_without_batch_dimension(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    before = client.get_inference_statistics("fixed").model_stats[0].inference_count
    result = client.infer("fixed", [infer_input("x", x)])
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    (st,) = client.get_inference_statistics("fixed").model_stats
    # Triton counts one inference per request for a model without a batch dimension.
    assert st.inference_count == before + 1 and [b.batch_size for b in st.batch_stats] == [1]


@pytest.mark.parametrize("datatype", ["BOOL", "UINT8", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"])
def test_v2_codec_round_trip(datatype):
    # The codec alone (ortserve.edge.codec imports no generated protobuf code).
    from types import SimpleNamespace

    from ortserve.dtypes import DTYPES, V2_DTYPES
    from ortserve.edge.codec import contents_to_numpy, v2_from_numpy, v2_to_numpy

    if datatype == "BYTES":
        x = np.array([["a", ""], ["ü", "xyz"]], dtype=object)
    else:
        x = np.arange(4).reshape(2, 2).astype(DTYPES[V2_DTYPES[datatype]])
    got_type, shape, data = v2_from_numpy(x)
    assert (got_type, shape) == (datatype, [2, 2])
    back = v2_to_numpy("t", datatype, shape, data)
    assert back.dtype == x.dtype and back.tolist() == x.tolist()
    if datatype in TYPED_FIELDS or datatype == "BYTES":
        field = TYPED_FIELDS.get(datatype, "bytes_contents")
        values = [v.encode() for v in x.reshape(-1)] if datatype == "BYTES" else x.reshape(-1).tolist()
        typed = contents_to_numpy("t", datatype, shape, SimpleNamespace(**{field: values}))
        assert typed.dtype == x.dtype and typed.tolist() == x.tolist()


def test_bytes_tensors_raw_and_typed(repo, client, stub):
    text = np.array(["hello", "", "héllo wörld ✓", "x" * 300], dtype=object)
    result = client.infer("strings", [infer_input("text", text, "BYTES")])
    assert result.get_response().outputs[0].datatype == "BYTES"
    got = result.as_numpy("same")
    assert [g.decode() for g in got] == list(text)
    (want,) = session(repo, "strings").run(None, {"text": text})
    assert [g.decode() for g in got] == list(want)
    typed = outputs_of(stub.ModelInfer(typed_request("strings", {"text": text})))
    assert [g.decode() for g in typed["same"]] == list(text)


def test_output_filtering_and_parameters(client):
    x = addmul_inputs()
    inputs = [infer_input(n, a) for n, a in x.items()]
    result = client.infer(
        "addmul",
        inputs,
        model_version="1",
        outputs=[triton.InferRequestedOutput("prod")],
        priority=1,
        timeout=10_000_000,
        parameters={"targeting_key": "user-7", "country": "fr"},
    )
    assert [o.name for o in result.get_response().outputs] == ["prod"]
    np.testing.assert_array_equal(result.as_numpy("prod"), x["a"] * x["b"])
    assert result.as_numpy("sum") is None
    assert "variant" not in result.get_response().parameters  # no flag routed it


@pytest.mark.parametrize(
    "parameters, version, variant",
    [
        ({}, "1", "stable"),
        ({"country": "fr"}, "2", "canary"),
        ({"country": "de"}, "1", "stable"),
        ({"targeting_key": "vip"}, "2", "canary"),
        ({"targeting_key": "someone", "country": "fr"}, "2", "canary"),
    ],
)
def test_flag_routing_from_parameters(client, parameters, version, variant):
    x = addmul_inputs()
    result = client.infer("routed", [infer_input(n, a) for n, a in x.items()], parameters=parameters)
    response = result.get_response()
    assert response.model_version == version
    assert response.parameters["variant"].string_param == variant
    np.testing.assert_allclose(
        result.as_numpy("sum"), x["a"] + x["b"] + (100 if version == "2" else 0), rtol=1e-6
    )
    # A version named in the request bypasses the flag.
    named = client.infer(
        "routed", [infer_input(n, a) for n, a in x.items()], model_version="1", parameters=parameters
    )
    assert named.get_response().model_version == "1" and "variant" not in named.get_response().parameters


def test_timeout_expires_in_the_queue(client):
    # A lone request waits for its batch up to max_queue_delay_us (20 ms): a 1 ms timeout expires first.
    inputs = [infer_input(n, a) for n, a in addmul_inputs(rows=1).items()]
    with pytest.raises(InferenceServerException) as e:
        client.infer("addmul", inputs, model_version="1", timeout=1000)
    assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert client.infer("addmul", inputs, model_version="1", timeout=0).as_numpy("sum") is not None


def test_timeout_bounds_the_queue_not_the_run(client):
    # Triton's timeout covers the time queued: a request that starts in time is answered even when
    # its run outlasts the timeout.
    x = np.random.default_rng(0).random((1, 512, 512), dtype=np.float32)
    timeout_us = 5_000
    result = client.infer("slow", [infer_input("x", x)], timeout=timeout_us)
    assert result.as_numpy("y").shape == (1, 512, 512)
    stats = client.get_inference_statistics("slow", as_json=True)["model_stats"][0]["inference_stats"]
    assert int(stats["compute_infer"]["ns"]) > timeout_us * 1000, "the model ran faster than the timeout"


def test_streaming_infer_errors_do_not_end_the_stream(client):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        x = addmul_inputs(rows=2)
        good = [infer_input(n, a) for n, a in x.items()]
        bad = [infer_input("a", x["a"]), infer_input("b", np.zeros((2, 3), np.float32))]
        for i, inputs in enumerate([good, bad, good, good]):
            client.async_stream_infer("addmul", inputs, model_version="1", request_id=f"s{i}")
        got = [answers.get(timeout=10) for _ in range(4)]
    finally:
        client.stop_stream()
    errors = [err for result, err in got if err is not None]
    assert len(errors) == 1 and "INVALID_ARGUMENT" in errors[0].message() and "'b'" in errors[0].message()
    ok = sorted(result.get_response().id for result, err in got if err is None)
    assert ok == ["s0", "s2", "s3"]
    for result, err in got:
        if err is None:
            np.testing.assert_array_equal(result.as_numpy("prod"), x["a"] * x["b"])


def test_stream_with_more_requests_than_its_window(client):
    # More requests than the server reads ahead (STREAM_WINDOW = 256) on one stream: all answered
    # (the model's queue holds them all; a smaller max_queue_size answers RESOURCE_EXHAUSTED).
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        inputs = [infer_input(n, a) for n, a in addmul_inputs(rows=1).items()]
        for i in range(400):
            client.async_stream_infer("streamed", inputs, request_id=str(i))
        got = [answers.get(timeout=20) for _ in range(400)]
    finally:
        client.stop_stream()
    assert [err.message() for _, err in got if err is not None][:3] == []
    assert sorted(int(r.get_response().id) for r, _ in got) == list(range(400))


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


# -- bad input: each answered with a status naming the tensor, and the server keeps serving ------


def _addmul(**fields):
    return raw_request("addmul", addmul_inputs(), model_version="1", **fields)


def _raw_count():
    req = _addmul()
    del req.raw_input_contents[1]
    return req


def _raw_and_typed():
    req = _addmul()
    req.inputs[0].contents.fp32_contents.extend([0.0] * 8)
    return req


def _edit(i, **changes):
    def make():
        req = _addmul()
        t = req.inputs[i]
        for key, value in changes.items():
            if key == "shape":
                del t.shape[:]
                t.shape.extend(value)
            else:
                setattr(t, key, value)
        return req

    return make


def _truncate_b():
    req = _addmul()
    req.raw_input_contents[1] = req.raw_input_contents[1][:-4]
    return req


def _strings(data, shape=(2,)):
    def make():
        req = pb.ModelInferRequest(model_name="strings")
        req.inputs.add(name="text", datatype="BYTES", shape=shape)
        req.raw_input_contents.append(data)
        return req

    return make


def _typed(arrays, model="addmul", edit=None):
    def make():
        req = typed_request(model, arrays)
        if edit:
            edit(req)
        return req

    return make


def _with(**params):
    def make():
        req = _addmul()
        for key, (kind, value) in params.items():
            setattr(req.parameters[key], kind, value)
        return req

    return make


def _output(name, **params):
    def make():
        req = _addmul()
        o = req.outputs.add(name=name)
        for key, value in params.items():
            o.parameters[key].int64_param = value
        return req

    return make


def _twice():
    req = _addmul()
    req.inputs.add(name="a", datatype="FP32", shape=[2, 4])
    req.raw_input_contents.append(bytes(32))
    return req


def _shm():
    req = _addmul()
    req.inputs[0].parameters["shared_memory_region"].string_param = "region"
    return req


I = grpc.StatusCode.INVALID_ARGUMENT
BAD = {
    "raw count mismatch": (_raw_count, I, "1 raw_input_contents for 2 inputs"),
    "raw and typed for one input": (_raw_and_typed, I, "input 'a': both contents and raw_input_contents"),
    "unknown datatype": (_edit(0, datatype="FP8"), I, "input 'a': unknown datatype 'FP8'"),
    "datatype not the model's": (_edit(1, datatype="FP64", shape=[1, 4]), I, "input 'b': dtype float64"),
    "byte length mismatch": (_truncate_b, I, "input 'b': 28 bytes"),
    "shape not matching bytes": (_edit(0, shape=[2, 5]), I, "input 'a'"),
    "negative dim": (_edit(0, shape=[-2, 4]), I, "input 'a': shape [-2, 4]"),
    "huge dims": (_edit(1, shape=[1 << 40, 4]), I, "input 'b': shape"),
    "huge product": (_edit(1, shape=[1 << 31, 1 << 31, 1 << 31]), I, "input 'b'"),
    "BYTES length past the end": (
        _strings(struct.pack("<I", 100) + b"abc", shape=[1]),
        I,
        "input 'text': BYTES element 0",
    ),
    "BYTES prefix cut short": (
        _strings(struct.pack("<I", 1) + b"a" + b"\x01\x00\x00"),
        I,
        "input 'text': BYTES data ends at byte 5 in the length prefix of element 1",
    ),
    "BYTES bytes left over": (_strings(struct.pack("<I", 0) * 3), I, "input 'text': 4 bytes left"),
    "BYTES not UTF-8": (
        _strings(struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 0)),
        I,
        "input 'text': BYTES element 0 is not valid UTF-8",
    ),
    "BYTES huge shape, no data": (_strings(b"", shape=[1 << 31]), I, "input 'text'"),
    "typed count mismatch": (
        _typed(addmul_inputs(), edit=lambda r: r.inputs[1].contents.fp32_contents.append(1.0)),
        I,
        "input 'b': 9 values in contents.fp32_contents",
    ),
    "typed value out of range": (
        _typed(
            random_inputs(TYPED_FIELDS, rows=1),
            "types",
            edit=lambda r: r.inputs[5].contents.int_contents.__setitem__(0, 300),
        ),
        I,
        "input 'in_INT8': contents.int_contents holds 300",
    ),
    "typed FP16": (
        _typed({"a": np.zeros((1, 4), np.float16)}),
        I,
        "input 'a': datatype FP16 has no typed contents",
    ),
    "input twice": (_twice, I, "input 'a' is given twice"),
    "shared memory input": (_shm, I, "input 'a': shared memory is not supported"),
    "unknown output": (_output("nope"), I, "unknown output 'nope'"),
    "classification output": (
        _output("sum", classification=2),
        I,
        "output 'sum': the classification extension",
    ),
    "priority not an integer": (_with(priority=("string_param", "high")), I, "parameter 'priority'"),
    "negative timeout": (_with(timeout=("int64_param", -5)), I, "parameter 'timeout': -5"),
    "sequence id": (_with(sequence_id=("int64_param", 42)), I, "parameter 'sequence_id'"),
    "targeting key not a string": (_with(targeting_key=("int64_param", 1)), I, "parameter 'targeting_key'"),
    "unknown model": (
        lambda: raw_request("nope", addmul_inputs()),
        grpc.StatusCode.NOT_FOUND,
        "model 'nope'",
    ),
    "unknown version": (
        lambda: raw_request("addmul", addmul_inputs(), model_version="7"),
        grpc.StatusCode.NOT_FOUND,
        "version '7'",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(stub, case):
    make, code, message = BAD[case]
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(make())
    assert e.value.code() == code, e.value.details()
    assert message in e.value.details()
    x = addmul_inputs()
    good = outputs_of(stub.ModelInfer(raw_request("addmul", x, model_version="1")))
    np.testing.assert_array_equal(good["prod"], x["a"] * x["b"])
