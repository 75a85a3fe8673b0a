"""The Open Inference Protocol (KServe V2, Triton's gRPC service) end to end, with Triton's own
clients (sync, asyncio, streaming) against the real server.

Requests tritonclient cannot build (typed contents, malformed ones) are built with
``tritonclient.grpc.service_pb2``.

The ``kserve`` package's gRPC client is not tested: ``pip install kserve`` (0.21) would downgrade
protobuf 7 -> 6 and grpcio-tools in this environment, and its generated module defines the same
``inference.*`` symbols as tritonclient's, so it could not share this process anyway.
"""

from __future__ import annotations

import queue

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from tests.server.v2.common import (
    TYPED_FIELDS,
    addmul_inputs,
    infer_input,
    outputs_of,
    random_inputs,
    raw_request,
    session,
    typed_request,
)

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
    # its run outlasts the timeout. 30 ms leaves a busy machine room to start it; the run (96 matmuls
    # of 512 x 512 on one thread, about 26 GFLOP) takes longer than that even on a fast one.
    x = np.random.default_rng(0).random((1, 512, 512), dtype=np.float32)
    timeout_us = 30_000
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
