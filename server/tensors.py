"""dtype table and raw-bytes <-> numpy codecs, shared by both protocols.

Numeric tensors are raw little-endian C-order bytes read with ``np.frombuffer`` (no copy).
String tensors use the Open Inference Protocol's BYTES layout: each element is a 4-byte
little-endian length followed by its bytes; they decode to an object array of str (UTF-8),
which is what ONNX Runtime's string tensors take.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from .errors import InvalidInput

__all__ = [
    "DTYPES",
    "ONNX_TYPES",
    "MAX_DIM",
    "check_shape",
    "decode_bytes_tensor",
    "dtype_name",
    "encode_bytes_tensor",
    "from_numpy",
    "parse_dtype",
    "to_numpy",
]

try:  # bfloat16 comes with onnx's dependency ml_dtypes
    from ml_dtypes import bfloat16 as _bfloat16

    _BF16: np.dtype | None = np.dtype(_bfloat16)
except ImportError:  # pragma: no cover
    _BF16 = None

# Our wire names (numpy's) -> numpy dtype. "string" is numpy object dtype holding bytes.
DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "string": np.dtype(object),
}
if _BF16 is not None:
    DTYPES["bfloat16"] = _BF16

# ONNX Runtime's type strings (NodeArg.type) -> our names.
ONNX_TYPES: dict[str, str] = {
    "tensor(bool)": "bool",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16",
    "tensor(string)": "string",
}

_NAMES = {dt: name for name, dt in DTYPES.items()}
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


def dtype_name(dtype: np.dtype) -> str:
    if dtype.kind in "OSU":
        return "string"
    return _NAMES[np.dtype(dtype)]


def check_shape(shape: Sequence[int], tensor: str) -> tuple[int, ...]:
    for d in shape:
        if d < 0 or d > MAX_DIM:
            raise InvalidInput(
                f"input '{tensor}': shape {list(shape)} has dimension {d}, expected 0 <= dim <= {MAX_DIM}"
            )
    return tuple(int(d) for d in shape)


def to_numpy(name: str, dtype: str, shape: Sequence[int], data: bytes) -> np.ndarray:
    """Decode one wire tensor. Raises InvalidInput naming the tensor on any mismatch."""
    dt = parse_dtype(dtype, name)
    dims = check_shape(shape, name)
    count = 1
    for d in dims:
        count *= d
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


def decode_bytes_tensor(name: str, dims: tuple[int, ...], count: int, data: bytes) -> np.ndarray:
    out = np.empty(count, dtype=object)
    view = memoryview(data)
    pos, n = 0, len(data)
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
        try:  # ONNX Runtime's string tensors take Python str
            out[i] = str(view[pos : pos + length], "utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"input '{name}': BYTES element {i} is not valid UTF-8") from None
        pos += length
    if pos != n:
        raise InvalidInput(f"input '{name}': {n - pos} bytes left after {count} BYTES elements, expected none")
    return out.reshape(dims)


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        b = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)
