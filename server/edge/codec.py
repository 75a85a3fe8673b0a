"""Tensor codecs at the edge: raw bytes (and V2 typed contents) <-> numpy, shared by both protocols
and the Python client.

Numeric tensors are raw little-endian C-order bytes read with ``np.frombuffer`` (no copy).
String tensors use the Open Inference Protocol's BYTES layout: each element is a 4-byte
little-endian length followed by its bytes; they decode to an object array of str (UTF-8),
which is what ONNX Runtime's string tensors take.

The Open Inference Protocol (V2) names datatypes differently (``FP32``, ``BYTES``...) and may
send a tensor as typed ``contents`` (repeated fields) instead of raw bytes: ``v2_to_numpy``,
``contents_to_numpy`` and ``v2_from_numpy`` translate at that edge and share the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ortserve.dtypes import DTYPES, V2_DTYPES, V2_NAMES, dtype_name
from ortserve.errors import InvalidInput

__all__ = [
    "MAX_DIM",
    "V2_CONTENTS",
    "check_shape",
    "contents_to_numpy",
    "decode_bytes_tensor",
    "encode_bytes_tensor",
    "from_numpy",
    "parse_dtype",
    "parse_v2_datatype",
    "to_numpy",
    "v2_from_numpy",
    "v2_to_numpy",
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

# A bound that keeps shape products in int64 and rejects absurd shapes before any allocation.
MAX_DIM = 1 << 31
_LEN = struct.Struct("<I")


def parse_dtype(name: str, tensor: str) -> np.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidInput(
            f"input '{tensor}': unknown dtype '{name}', expected one of {', '.join(DTYPES)}"
        ) from None


def parse_v2_datatype(datatype: str, tensor: str) -> str:
    """Our dtype name for a V2 datatype name."""
    ours = V2_DTYPES.get(datatype)
    if ours is None or ours not in DTYPES:
        raise InvalidInput(
            f"input '{tensor}': unknown datatype '{datatype}', expected one of "
            f"{', '.join(v2 for v2, name in V2_DTYPES.items() if name in DTYPES)}"
        )
    return ours


def check_shape(shape: Sequence[int], tensor: str) -> tuple[int, ...]:
    for d in shape:
        if d < 0 or d > MAX_DIM:
            raise InvalidInput(
                f"input '{tensor}': shape {list(shape)} has dimension {d}, expected 0 <= dim <= {MAX_DIM}"
            )
    return tuple(int(d) for d in shape)


def _count(dims: tuple[int, ...]) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def to_numpy(name: str, dtype: str, shape: Sequence[int], data: bytes) -> np.ndarray:
    """Decode one wire tensor. Raises InvalidInput naming the tensor on any mismatch."""
    dt = parse_dtype(dtype, name)
    dims = check_shape(shape, name)
    count = _count(dims)
    if dt.kind == "O":
        return decode_bytes_tensor(name, dims, count, data)
    expected = count * dt.itemsize
    if len(data) != expected:
        raise InvalidInput(
            f"input '{name}': {len(data)} bytes of data, expected {expected} "
            f"(shape {list(dims)} x {dt.itemsize} bytes of {dtype})"
        )
    return np.frombuffer(data, dtype=dt.newbyteorder("<") if dt.byteorder == ">" else dt).reshape(dims)


def from_numpy(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """Encode an array as (dtype name, shape, raw bytes)."""
    if array.dtype.kind in "OSU":
        return "string", list(array.shape), encode_bytes_tensor(array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return dtype_name(array.dtype), list(array.shape), array.tobytes()


def v2_to_numpy(name: str, datatype: str, shape: Sequence[int], data: bytes) -> np.ndarray:
    """Decode one V2 tensor sent in ``raw_input_contents``."""
    return to_numpy(name, parse_v2_datatype(datatype, name), shape, data)


def contents_to_numpy(name: str, datatype: str, shape: Sequence[int], contents: Any) -> np.ndarray:
    """Decode one V2 tensor sent as typed values: ``contents`` is an InferTensorContents message
    (read by field name only, so this module stays free of generated code)."""
    ours = parse_v2_datatype(datatype, name)
    field = V2_CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input '{name}': datatype {datatype} has no typed contents field, expected it in raw_input_contents"
        )
    dims = check_shape(shape, name)
    count = _count(dims)
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}': {len(values)} values in contents.{field}, expected {count} (shape {list(dims)})"
        )
    if ours == "string":
        out = np.empty(count, dtype=object)
        for i, item in enumerate(values):
            out[i] = _utf8(name, i, item)
        return out.reshape(dims)
    wire = np.array(values, dtype=_CONTENTS_WIRE[field])
    dt = DTYPES[ours]
    if dt != wire.dtype and dt.kind in "iu" and count:
        info = np.iinfo(dt)
        low, high = wire.min(), wire.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(
                f"input '{name}': contents.{field} holds {bad}, expected {datatype} values in [{info.min}, {info.max}]"
            )
    return wire.astype(dt, copy=False).reshape(dims)


def v2_from_numpy(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """Encode an array as (V2 datatype, shape, raw bytes)."""
    dtype, shape, data = from_numpy(array)
    return V2_NAMES[dtype], shape, data


def _utf8(name: str, index: int, data: bytes | memoryview) -> str:
    try:  # ONNX Runtime's string tensors take Python str
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"input '{name}': BYTES element {index} is not valid UTF-8") from None


def decode_bytes_tensor(name: str, dims: tuple[int, ...], count: int, data: bytes) -> np.ndarray:
    pos, n = 0, len(data)
    if count * 4 > n:  # checked before allocating: a huge shape must not cost memory
        raise InvalidInput(
            f"input '{name}': {n} bytes of BYTES data cannot hold {count} elements (shape {list(dims)}), "
            f"each needs a 4-byte length prefix"
        )
    out = np.empty(count, dtype=object)
    view = memoryview(data)
    for i in range(count):
        if pos + 4 > n:
            raise InvalidInput(
                f"input '{name}': BYTES data ends at byte {pos} in the length prefix of element {i}, "
                f"expected {count} length-prefixed elements"
            )
        (length,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + length > n:
            raise InvalidInput(
                f"input '{name}': BYTES element {i} declares {length} bytes but only {n - pos} remain"
            )
        out[i] = _utf8(name, i, view[pos : pos + length])
        pos += length
    if pos != n:
        raise InvalidInput(
            f"input '{name}': {n - pos} bytes left after {count} BYTES elements, expected none"
        )
    return out.reshape(dims)


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        b = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)
