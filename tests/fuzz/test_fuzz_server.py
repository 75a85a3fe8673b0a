"""A real server on client mistakes of every shape, over gRPC: whatever Predict or ModelInfer
carries (or bytes that are no message at all), the answer is a status that names the mistake,
never INTERNAL or UNKNOWN, and the server serves on."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ortserve._proto.inference import grpc_service_pb2 as v2pb
from ortserve._proto.inference import grpc_service_pb2_grpc as v2grpc
from ortserve._proto.ortserve.v1 import inference_pb2 as pb
from ortserve._proto.ortserve.v1 import inference_pb2_grpc as pb_grpc
from ortserve.client import Client
from tests import onnx_models as m
from tests.fuzz import strategies as s
from tests.fuzz.test_fuzz_codecs import typed_contents

BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
models = st.sampled_from(["addmul", "strings", "fixed"]) | st.text(max_size=8)
versions = st.sampled_from(["", "1", "2"]) | st.text(max_size=4)
A = np.ones((1, 4), np.float32)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    m.publish(root, "addmul", 1, m.addmul())
    m.publish(root, "strings", 1, m.strings())
    m.publish(root, "fixed", 1, m.fixed())
    return root


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target) as ch:
        yield ch


def _status(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


@st.composite
def predict_requests(draw) -> pb.PredictRequest:
    request = pb.PredictRequest(
        model=draw(models), version=draw(versions), request_id=draw(st.text(max_size=8))
    )
    for _ in range(draw(st.integers(0, 3))):
        shape = draw(st.lists(st.integers(0, 4), max_size=3) | s.shapes)
        dtype = draw(st.sampled_from(["float32", "string"]) | s.dtypes)
        if draw(st.booleans()) and all(0 <= d <= 8 for d in shape) and dtype == "float32":
            data = b"\0" * (4 * int(np.prod(shape)))  # the right length: it reaches the model
        else:
            data = draw(s.data | s.bytes_tensor_data())
        request.inputs.append(pb.Tensor(name=draw(s.names), dtype=dtype, shape=shape, data=data))
    request.outputs.extend(draw(st.lists(st.sampled_from(["sum", "prod", "same"]) | s.names, max_size=2)))
    request.priority = draw(st.integers(0, 2**32 - 1))
    return request


@given(predict_requests())
def test_predict_never_answers_internal(channel, request):
    code = _status(lambda: pb_grpc.InferenceStub(channel).Predict(request, timeout=30))
    assert code not in BUGS, (code, request)


@st.composite
def infer_requests(draw) -> v2pb.ModelInferRequest:
    request = v2pb.ModelInferRequest(
        model_name=draw(models), model_version=draw(versions), id=draw(st.text(max_size=6))
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        shape = draw(st.lists(st.integers(0, 4), max_size=3) | s.shapes)
        if raw:
            request.inputs.add(
                name=draw(s.names),
                datatype=draw(st.sampled_from(["FP32", "BYTES"]) | s.v2_datatypes),
                shape=shape,
            )
            request.raw_input_contents.append(draw(s.data | s.bytes_tensor_data()))
        else:
            datatype, contents = draw(typed_contents())
            request.inputs.add(name=draw(s.names), datatype=datatype, shape=shape, contents=contents)
    for key in draw(
        st.lists(
            st.sampled_from(["priority", "timeout", "targeting_key", "x-variant", "sequence_id"]), max_size=3
        )
    ):
        kind = draw(st.sampled_from(["int64_param", "string_param", "bool_param"]))
        value = {"int64_param": st.integers(-(2**63), 2**63 - 1), "string_param": st.text(max_size=5)}
        setattr(request.parameters[key], kind, draw(value.get(kind, st.booleans())))
    return request


@given(infer_requests())
def test_model_infer_never_answers_internal(channel, request):
    code = _status(lambda: v2grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30))
    assert code not in BUGS, (code, request)


@given(
    st.binary(max_size=300),
    st.sampled_from(["/ortserve.v1.Inference/Predict", "/inference.GRPCInferenceService/ModelInfer"]),
)
def test_bytes_that_are_no_message_never_answer_internal(channel, raw, method):
    call = channel.unary_unary(method, request_serializer=lambda x: x, response_deserializer=lambda x: x)
    assert _status(lambda: call(raw, timeout=30)) not in BUGS


def test_the_server_serves_on_after_the_fuzzing(server):
    with Client(server.target) as c:
        np.testing.assert_array_equal(c.predict("addmul", {"a": A, "b": A})["sum"], A * 2)
