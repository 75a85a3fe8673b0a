"""Both protocols' codecs on anything a client could send: a tensor header and its data either
give a tensor whose decoded values fit the header, or InvalidInput; nothing else, and round trips
are exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ortserve._proto.inference import grpc_service_pb2 as v2pb
from ortserve.dtypes import DTYPES, V2_NAMES
from ortserve.edge import v2_codec
from ortserve.edge.codec import (
    V2_CONTENTS,
    contents_tensor,
    encode_bytes_tensor,
    from_numpy,
    to_numpy,
    v2_wire_tensor,
    wire_tensor,
)
from ortserve.errors import InvalidInput
from ortserve.tensors import Encoded
from tests.fuzz import strategies as s


def _settle(make):
    """The decoded array, or None for InvalidInput: any other exception fails the test."""
    try:
        tensor = make()
        array = tensor.decode() if isinstance(tensor, Encoded) else tensor
    except InvalidInput:
        return None, None
    return tensor, array


@given(s.names, s.dtypes, s.shapes, s.data | s.bytes_tensor_data())
def test_a_wire_tensor_decodes_to_its_header_or_is_invalid(name, dtype, shape, data):
    tensor, array = _settle(lambda: wire_tensor(name, dtype, shape, data))
    if tensor is not None:
        assert array.shape == tuple(shape) == tensor.shape
        assert array.dtype == DTYPES[dtype] == tensor.dtype


@given(s.names, s.v2_datatypes, s.shapes, s.data | s.bytes_tensor_data())
def test_a_v2_raw_tensor_decodes_to_its_header_or_is_invalid(name, datatype, shape, data):
    tensor, array = _settle(lambda: v2_wire_tensor(name, datatype, shape, data))
    if tensor is not None:
        assert array.shape == tuple(shape)


@st.composite
def typed_contents(draw):
    datatype = draw(s.v2_datatypes)
    contents = v2pb.InferTensorContents()
    field = V2_CONTENTS.get(datatype) or draw(st.sampled_from(sorted(set(V2_CONTENTS.values()))))
    n = draw(st.integers(0, 8))
    values = {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": st.integers(-(2**63), 2**63 - 1),
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=6),
    }[field]
    getattr(contents, field).extend(draw(st.lists(values, min_size=n, max_size=n)))
    return datatype, contents


@given(s.names, s.shapes, typed_contents())
def test_typed_contents_decode_to_their_header_or_are_invalid(name, shape, typed):
    datatype, contents = typed
    tensor, array = _settle(lambda: contents_tensor(name, datatype, shape, contents))
    if tensor is not None:
        assert array.shape == tuple(shape)


@given(st.binary(max_size=400))
def test_any_bytes_as_a_v2_request_decode_or_are_invalid(raw):
    try:
        request = v2pb.ModelInferRequest.FromString(raw)
    except Exception:  # not protobuf: the interceptor chain answers INVALID_ARGUMENT before this
        return
    try:
        decoded = v2_codec.decode(request, _Context())
    except InvalidInput:
        return
    for t in decoded.inputs.values():
        _settle(lambda t=t: t)


class _Context:
    """What the codec reads of a gRPC servicer context (no metadata, no deadline)."""

    def invocation_metadata(self):
        return ()

    def time_remaining(self):
        return None


def _arrays(dtype: str):
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    if dtype == "bfloat16":  # no strategy of its own: any 16 bits, typed
        return hnp.arrays(np.uint16, shapes).map(lambda a: a.view(DTYPES["bfloat16"]))
    return hnp.arrays(DTYPES[dtype], shapes)


@given(st.sampled_from([d for d in DTYPES if d != "string"]).flatmap(_arrays))
def test_numeric_arrays_round_trip_exactly(array):
    dtype, shape, data = from_numpy(array)
    back = to_numpy("x", dtype, shape, data)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    assert V2_NAMES[dtype]


@given(st.lists(st.text(max_size=10), max_size=30))
def test_strings_round_trip_exactly(texts):
    array = np.array(texts, dtype=object)
    back = to_numpy("t", "string", [len(texts)], encode_bytes_tensor(array))
    assert back.tolist() == texts
