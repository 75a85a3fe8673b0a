"""Predict with malformed requests: each gets a status and a message that names the input and
says expected vs got, and the server keeps serving."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest

from ortserve._proto.ortserve.v1 import inference_pb2 as pb
from ortserve.client import Client
from tests import onnx_models as m

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
    m.publish(root, "addmul", 1, m.addmul(), ADDMUL_CONFIG)
    m.publish(root, "pair", 1, m.pair(), PAIR_CONFIG)
    m.publish(root, "fixed", 1, m.fixed())
    m.publish(root, "strings", 1, m.strings())
    return root


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target) as c:
        yield c


# --- malformed requests ---------------------------------------------------------------------------


def _t(name, dtype="float32", shape=(1, 4), data=None):
    if data is None:
        n = int(np.prod(shape)) if all(d >= 0 for d in shape) else 0
        data = b"\0" * (n * 4)
    return pb.Tensor(name=name, dtype=dtype, shape=list(shape), data=data)


GOOD = [_t("a"), _t("b")]
BAD = [
    ("unknown model", pb.PredictRequest(model="nope", inputs=GOOD), "NOT_FOUND", "model 'nope'"),
    ("empty model name", pb.PredictRequest(model="", inputs=GOOD), "NOT_FOUND", "model ''"),
    (
        "unknown version",
        pb.PredictRequest(model="addmul", version="9", inputs=GOOD),
        "NOT_FOUND",
        "version '9'",
    ),
    ("non-numeric version", pb.PredictRequest(model="addmul", version="x", inputs=GOOD), "NOT_FOUND", "'x'"),
    (
        "unknown input",
        pb.PredictRequest(model="addmul", inputs=[*GOOD, _t("c")]),
        "INVALID_ARGUMENT",
        "unknown input 'c', expected inputs: a, b",
    ),
    (
        "missing input",
        pb.PredictRequest(model="addmul", inputs=[_t("a")]),
        "INVALID_ARGUMENT",
        "missing input 'b'",
    ),
    (
        "duplicate input",
        pb.PredictRequest(model="addmul", inputs=[_t("a"), _t("a"), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a' is given twice",
    ),
    (
        "wrong dtype",
        pb.PredictRequest(model="addmul", inputs=[_t("a", "int32"), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': dtype int32, expected float32",
    ),
    (
        "unknown dtype",
        pb.PredictRequest(model="addmul", inputs=[_t("a", "float8", data=b""), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': unknown dtype 'float8'",
    ),
    (
        "wrong rank",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(4,)), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': shape [4] has rank 1, expected rank 2",
    ),
    (
        "wrong dim",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(1, 5)), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': dimension 1 is 5, expected 4",
    ),
    (
        "short data",
        pb.PredictRequest(model="addmul", inputs=[_t("a", data=b"\0" * 15), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': 15 bytes of data, expected 16",
    ),
    (
        "long data",
        pb.PredictRequest(model="addmul", inputs=[_t("a", data=b"\0" * 17), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': 17 bytes of data, expected 16",
    ),
    (
        "negative dim",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(-1, 4), data=b""), _t("b")]),
        "INVALID_ARGUMENT",
        "input 'a': shape [-1, 4] has dimension -1",
    ),
    (
        "huge dim",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(1 << 40, 4), data=b""), _t("b")]),
        "INVALID_ARGUMENT",
        "has dimension 1099511627776",
    ),
    (
        "batch above max",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(17, 4)), _t("b", shape=(17, 4))]),
        "INVALID_ARGUMENT",
        "batch size 17, expected at most max_batch_size 16",
    ),
    (
        "batch zero",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(0, 4)), _t("b", shape=(0, 4))]),
        "INVALID_ARGUMENT",
        "batch size 0, expected at least 1",
    ),
    (
        "batch mismatch",
        pb.PredictRequest(model="addmul", inputs=[_t("a", shape=(2, 4)), _t("b", shape=(3, 4))]),
        "INVALID_ARGUMENT",
        "input 'b': batch size 3, expected 2 like input 'a'",
    ),
    (
        "too many elements",
        pb.PredictRequest(model="pair", inputs=[_t("x", shape=(1, 1001)), _t("y", shape=(1, 1))]),
        "INVALID_ARGUMENT",
        "input 'x': 1001 elements, expected at most 1000",
    ),
    (
        "unknown output",
        pb.PredictRequest(model="addmul", inputs=GOOD, outputs=["nope"]),
        "INVALID_ARGUMENT",
        "unknown output 'nope', expected outputs: sum, prod",
    ),
    (
        "fixed shape wrong",
        pb.PredictRequest(model="fixed", inputs=[_t("x", shape=(3, 3))]),
        "INVALID_ARGUMENT",
        "input 'x': dimension 0 is 3, expected 2",
    ),
    (
        "bytes prefix too long",
        pb.PredictRequest(
            model="strings",
            inputs=[pb.Tensor(name="text", dtype="string", shape=[1], data=struct.pack("<I", 99) + b"abc")],
        ),
        "INVALID_ARGUMENT",
        "input 'text': BYTES element 0 declares 99 bytes but only 3 remain",
    ),
    (
        "bytes prefix cut",
        pb.PredictRequest(
            model="strings",
            inputs=[
                pb.Tensor(name="text", dtype="string", shape=[2], data=struct.pack("<I", 1) + b"a" + b"\1\0")
            ],
        ),
        "INVALID_ARGUMENT",
        "input 'text': 7 bytes of BYTES data cannot hold 2 elements",
    ),
    (
        "bytes prefix split",
        pb.PredictRequest(
            model="strings",
            inputs=[
                pb.Tensor(
                    name="text", dtype="string", shape=[2], data=struct.pack("<I", 4) + b"abcd" + b"\1\0"
                )
            ],
        ),
        "INVALID_ARGUMENT",
        "input 'text': BYTES data ends at byte 8 in the length prefix of element 1",
    ),
    (
        "bytes not utf-8",
        pb.PredictRequest(
            model="strings",
            inputs=[
                pb.Tensor(name="text", dtype="string", shape=[1], data=struct.pack("<I", 2) + b"\xff\xfe")
            ],
        ),
        "INVALID_ARGUMENT",
        "input 'text': BYTES element 0 is not valid UTF-8",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_malformed_request_gets_clear_error_and_server_keeps_serving(client, case):
    _, request, code, message = case
    with pytest.raises(grpc.RpcError) as e:
        client.stub.Predict(request, timeout=10)
    assert e.value.code().name == code, e.value.details()
    assert message in e.value.details()
    a = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(client.predict("addmul", {"a": a, "b": a})["sum"], a * 2)
