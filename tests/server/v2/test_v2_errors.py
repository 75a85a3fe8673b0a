"""The Open Inference Protocol with malformed requests: each answered with a status naming the
tensor, and the server keeps serving."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from tests.server.v2.common import (
    TYPED_FIELDS,
    addmul_inputs,
    outputs_of,
    random_inputs,
    raw_request,
    typed_request,
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
