"""Tensor codecs at the edge: raw bytes (and V2 typed contents) <-> numpy, shared by both protocols
and the Python client.

Numeric tensors are raw little-endian C-order bytes read with ``np.frombuffer`` (no copy).
String tensors use the Open Inference Protocol's BYTES layout: each element is a 4-byte
little-endian length followed by its bytes; they decode to an object array of str (UTF-8),
which is what ONNX Runtime's string tensors take.

The Open Inference Protocol (V2) names datatypes differently (``FP32``, ``BYTES``...) and may
send a tensor as typed ``contents`` (repeated fields) instead of raw bytes: ``v2_to_numpy``,
``contents_to_numpy`` and ``v2_from_numpy`` translate at that edge and share the rest.

The server decodes requests with ``wire_tensor`` / ``v2_wire_tensor`` / ``contents_tensor``: they
check what the header allows at once (dtype, shape, byte count) and leave what costs time per
element (BYTES, typed contents) as an ``ortserve.tensors.Encoded`` that the core decodes after the
request has passed its signature. ``to_numpy`` and friends decode at once (the client's side).
Names the client sent are quoted through ``ortserve.errors.quoted``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from ortserve.dtypes import DTYPES, V2_DTYPES, V2_NAMES, dtype_name
from ortserve.errors import InvalidInput, quoted
from ortserve.tensors import STR_OVERHEAD, Encoded, Tensor, once

__all__ = [
    "MAX_DIM",
    "MAX_EXTENT",
    "MAX_RANK",
    "V2_CONTENTS",
    "check_shape",
    "contents_tensor",
    "contents_to_numpy",
    "decode_bytes_tensor",
    "encode_bytes_tensor",
    "encode_outputs",
    "from_numpy",
    "parse_dtype",
    "parse_v2_datatype",
    "to_numpy",
    "v2_from_numpy",
    "v2_to_numpy",
    "v2_wire_tensor",
    "wire_tensor",
]

# The InferTensorContents field that carries each V2 datatype as typed values. FP16 and BF16
# have none: the protocol sends them only as raw bytes.
V2_CONTENTS: dict[str, str] = {
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
    "BYTES": "bytes_contents",
}
# Each numeric contents field's element type on the wire (values are read at that width, then
# range-checked into the datatype: numpy would wrap 300 into an INT8 silently).
_CONTENTS_WIRE = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}

# Bounds that reject absurd shapes before any allocation: each dimension, the rank (numpy's own
# limit is 64), and the product of the non-zero dimensions (numpy refuses a shape such as
# [0, 2**31, 2**31] whose size in bytes would not fit in int64, even though it has no element).
MAX_DIM = 1 << 31
MAX_RANK = 32
MAX_EXTENT = 1 << 40
_LEN = struct.Struct("<I")
_OBJECT = np.dtype(object)


def parse_dtype(name: str, tensor: str) -> np.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidInput(
            f"input {quoted(tensor)}: unknown dtype {quoted(name)}, expected one of {', '.join(DTYPES)}"
        ) from None


def parse_v2_datatype(datatype: str, tensor: str) -> str:
    """Our dtype name for a V2 datatype name."""
    ours = V2_DTYPES.get(datatype)
    if ours is None or ours not in DTYPES:
        raise InvalidInput(
            f"input {quoted(tensor)}: unknown datatype {quoted(datatype)}, expected one of "
            f"{', '.join(v2 for v2, name in V2_DTYPES.items() if name in DTYPES)}"
        )
    return ours


def check_shape(shape: Sequence[int], tensor: str) -> tuple[int, ...]:
    if len(shape) > MAX_RANK:
        raise InvalidInput(
            f"input {quoted(tensor)}: shape has {len(shape)} dimensions, expected at most {MAX_RANK}"
        )
    extent = 1
    for d in shape:
        if d < 0 or d > MAX_DIM:
            raise InvalidInput(
                f"input {quoted(tensor)}: shape {list(shape)} has dimension {d}, expected 0 <= dim <= {MAX_DIM}"
            )
        extent *= d or 1
    if extent > MAX_EXTENT:
        raise InvalidInput(
            f"input {quoted(tensor)}: shape {list(shape)} is too large: its non-zero dimensions "
            f"multiply to {extent}, expected at most {MAX_EXTENT}"
        )
    return tuple(int(d) for d in shape)


def _count(dims: tuple[int, ...]) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def wire_tensor(name: str, dtype: str, shape: Sequence[int], data: bytes | Callable[[], bytes]) -> Tensor:
    """One wire tensor as the server takes it. Raises InvalidInput naming the tensor when the dtype
    or the shape is wrong, or the byte count (at once when ``data`` is bytes).

    ``data`` as a function (reading a protobuf bytes field copies it) leaves the data unread: the
    tensor is an ``Encoded`` whose header is checked first and whose data is read only once the
    request has passed its signature. Given bytes, numeric data is an array over them (no copy)."""
    dt = parse_dtype(dtype, name)
    dims = check_shape(shape, name)
    count = _count(dims)
    if not callable(data):
        raw = data
        if dt.kind == "O":
            return _bytes_tensor(name, dims, count, lambda: raw)
        return _numbers(name, dt, dims, raw)
    fetch = once(data)
    if dt.kind == "O":
        return _bytes_tensor(name, dims, count, fetch)
    return Encoded(
        name, dt, dims, count * dt.itemsize, lambda: _numbers(name, dt, dims, fetch()), inline=True
    )


def _numbers(name: str, dt: np.dtype, dims: tuple[int, ...], data: bytes) -> np.ndarray:
    expected = _count(dims) * dt.itemsize
    if len(data) != expected:
        raise InvalidInput(
            f"input {quoted(name)}: {len(data)} bytes of data, expected {expected} "
            f"(shape {list(dims)} x {dt.itemsize} bytes of {dtype_name(dt)})"
        )
    return np.frombuffer(data, dtype=dt.newbyteorder("<") if dt.byteorder == ">" else dt).reshape(dims)


def _decoded(tensor: Tensor) -> np.ndarray:
    return tensor.decode() if isinstance(tensor, Encoded) else tensor


def to_numpy(name: str, dtype: str, shape: Sequence[int], data: bytes) -> np.ndarray:
    """Decode one wire tensor at once. Raises InvalidInput naming the tensor on any mismatch."""
    return _decoded(wire_tensor(name, dtype, shape, data))


def from_numpy(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """Encode an array as (dtype name, shape, raw bytes)."""
    if array.dtype.kind in "OSU":
        return "string", list(array.shape), encode_bytes_tensor(array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return dtype_name(array.dtype), list(array.shape), array.tobytes()


def v2_wire_tensor(
    name: str, datatype: str, shape: Sequence[int], data: bytes | Callable[[], bytes]
) -> Tensor:
    """One V2 tensor sent in ``raw_input_contents``, as the server takes it (see ``wire_tensor``)."""
    return wire_tensor(name, parse_v2_datatype(datatype, name), shape, data)


def v2_to_numpy(name: str, datatype: str, shape: Sequence[int], data: bytes) -> np.ndarray:
    """Decode one V2 tensor sent in ``raw_input_contents``."""
    return _decoded(v2_wire_tensor(name, datatype, shape, data))


def contents_tensor(name: str, datatype: str, shape: Sequence[int], contents: Any) -> Encoded:
    """One V2 tensor sent as typed values, its count checked and its values left in the message:
    ``contents`` is an InferTensorContents message (read by field name only, so this module stays
    free of generated code)."""
    ours = parse_v2_datatype(datatype, name)
    field = V2_CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input {quoted(name)}: datatype {datatype} has no typed contents field, "
            "expected it in raw_input_contents"
        )
    dims = check_shape(shape, name)
    count = _count(dims)
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input {quoted(name)}: {len(values)} values in contents.{field}, expected {count} (shape {list(dims)})"
        )
    dt = DTYPES[ours]
    if ours == "string":
        sample = [len(values[i]) for i in range(min(count, 64))]
        mean = sum(sample) / len(sample) if sample else 0
        nbytes = int(count * (STR_OVERHEAD + 2 * mean))
        return Encoded(name, dt, dims, nbytes, partial(_decode_strings, name, dims, values))
    wire = _CONTENTS_WIRE[field]
    nbytes = count * (2 * wire.itemsize + dt.itemsize)  # the message's values, numpy's copy, the cast
    return Encoded(name, dt, dims, nbytes, partial(_decode_contents, name, datatype, field, dims, values))


def contents_to_numpy(name: str, datatype: str, shape: Sequence[int], contents: Any) -> np.ndarray:
    """Decode one V2 tensor sent as typed values at once."""
    return contents_tensor(name, datatype, shape, contents).decode()


def _decode_strings(name: str, dims: tuple[int, ...], values: Any) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, item in enumerate(values):
        out[i] = _utf8(name, i, item)
    return out.reshape(dims)


def _decode_contents(name: str, datatype: str, field: str, dims: tuple[int, ...], values: Any) -> np.ndarray:
    wire = np.array(values, dtype=_CONTENTS_WIRE[field])
    dt = DTYPES[V2_DTYPES[datatype]]
    if dt != wire.dtype and dt.kind in "iu" and wire.size:
        info = np.iinfo(dt)
        low, high = wire.min(), wire.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(
                f"input {quoted(name)}: contents.{field} holds {bad}, expected {datatype} values in [{info.min}, {info.max}]"
            )
    return wire.astype(dt, copy=False).reshape(dims)


def v2_from_numpy(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """Encode an array as (V2 datatype, shape, raw bytes)."""
    dtype, shape, data = from_numpy(array)
    return V2_NAMES[dtype], shape, data


# String outputs larger than this are encoded in a worker thread (a Python step per element).
INLINE_STRINGS = 2048


def _encode_all(outputs: Mapping[str, np.ndarray], v2: bool) -> list[tuple[str, str, list[int], bytes]]:
    encode = v2_from_numpy if v2 else from_numpy
    return [(name, *encode(array)) for name, array in outputs.items()]


async def encode_outputs(
    outputs: Mapping[str, np.ndarray], *, v2: bool = False
) -> list[tuple[str, str, list[int], bytes]]:
    """Every output as (name, dtype, shape, raw bytes), V2 datatype names when ``v2``; off the
    event loop when a string output is large."""
    if all(a.dtype.kind not in "OSU" or a.size <= INLINE_STRINGS for a in outputs.values()):
        return _encode_all(outputs, v2)
    return await asyncio.to_thread(_encode_all, outputs, v2)


def _utf8(name: str, index: int, data: bytes | memoryview) -> str:
    try:  # ONNX Runtime's string tensors take Python str
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"input {quoted(name)}: BYTES element {index} is not valid UTF-8") from None


def _check_bytes_room(name: str, dims: tuple[int, ...], count: int, n: int) -> None:
    if count * 4 > n:  # checked before allocating: a huge shape must not cost memory
        raise InvalidInput(
            f"input {quoted(name)}: {n} bytes of BYTES data cannot hold {count} elements (shape {list(dims)}), "
            f"each needs a 4-byte length prefix"
        )


def _bytes_tensor(name: str, dims: tuple[int, ...], count: int, fetch: Callable[[], bytes]) -> Encoded:
    def nbytes() -> int:  # the message's bytes, the characters, the str objects
        n = len(fetch())
        _check_bytes_room(name, dims, count, n)
        return 2 * n + STR_OVERHEAD * count

    return Encoded(name, _OBJECT, dims, nbytes, lambda: decode_bytes_tensor(name, dims, count, fetch()))


def decode_bytes_tensor(name: str, dims: tuple[int, ...], count: int, data: bytes) -> np.ndarray:
    """The BYTES layout (4-byte little-endian length, then the bytes, per element) as an object
    array of str; raises InvalidInput when the data does not hold exactly ``count`` elements."""
    pos, n = 0, len(data)
    _check_bytes_room(name, dims, count, n)
    out = np.empty(count, dtype=object)
    view = memoryview(data)
    for i in range(count):
        if pos + 4 > n:
            raise InvalidInput(
                f"input {quoted(name)}: BYTES data ends at byte {pos} in the length prefix of element {i}, "
                f"expected {count} length-prefixed elements"
            )
        (length,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + length > n:
            raise InvalidInput(
                f"input {quoted(name)}: BYTES element {i} declares {length} bytes but only {n - pos} remain"
            )
        out[i] = _utf8(name, i, view[pos : pos + length])
        pos += length
    if pos != n:
        raise InvalidInput(
            f"input {quoted(name)}: {n - pos} bytes left after {count} BYTES elements, expected none"
        )
    return out.reshape(dims)


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    """The BYTES layout of a string array (str elements UTF-8 encoded, bytes taken as they are)."""
    flat = array.reshape(-1).tolist()
    try:
        items = list(map(str.encode, flat))  # the common case, at C speed
    except TypeError:
        items = [x if isinstance(x, bytes) else str(x).encode() for x in flat]
    pack = _LEN.pack
    return b"".join([pack(len(b)) + b for b in items])
