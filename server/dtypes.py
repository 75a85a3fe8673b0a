"""The dtype names every layer shares: ours (numpy's names), ONNX Runtime's type strings and the
Open Inference Protocol's datatype names; and :class:`TensorSpec`, one tensor of a model's signature,
shared by the server's core and the optimize toolchain.

    DTYPES["float32"]            # numpy dtype
    ONNX_TYPES["tensor(float)"]  # "float32"
    V2_NAMES["float32"]          # "FP32"
    TensorSpec("input", "float32", (-1, 64)).describe()          # 'float32 [-1, 64]'
    TensorSpec.of("input_ids", "int64", ("batch", "sequence"))   # shape (-1, -1), dimensions named

A dimension is a size or dynamic (-1). Where the model names a dynamic dimension (``"batch"``,
``"sequence"``), ``dim_names`` keeps the name, so optimize can ask for ``--dim sequence=128``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DTYPES", "ONNX_TYPES", "V2_DTYPES", "V2_NAMES", "Dim", "TensorSpec", "dtype_name"]

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

# The Open Inference Protocol's datatype names -> ours.
V2_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "string",
    "BF16": "bfloat16",
}
V2_NAMES: dict[str, str] = {ours: v2 for v2, ours in V2_DTYPES.items()}
_NAMES = {dt: name for name, dt in DTYPES.items()}


def dtype_name(dtype: np.dtype) -> str:
    """Our name for a numpy dtype (``str``/``bytes``/object arrays are ``string``)."""
    if dtype.kind in "OSU":
        return "string"
    return _NAMES[np.dtype(dtype)]


Dim = int | str  # a size, or a dynamic dimension by name


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # our dtype name (ortserve.dtypes.DTYPES)
    shape: tuple[int, ...]  # every dimension, the batch one included; -1: dynamic
    dim_names: tuple[str, ...] = ()  # per dimension when any is named: the name of a dynamic one, else ""

    @classmethod
    def of(cls, name: str, dtype: str, dims: Sequence[Dim | None]) -> TensorSpec:
        """A spec from dimensions as models and users write them: a size, or a name (or -1, None) for a
        dynamic one."""
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
        names = tuple(d if isinstance(d, str) and d else "" for d in dims)
        return cls(name, dtype, shape, names if any(names) else ())

    @classmethod
    def from_onnx(cls, name: str, onnx_type: str, dims: Sequence[Dim | None]) -> TensorSpec:
        """A spec from ONNX Runtime's ``NodeArg`` (``tensor(float)``...); ValueError for a type that
        ortserve has no dtype for."""
        dtype = ONNX_TYPES.get(onnx_type)
        if dtype is None:
            raise ValueError(f"'{name}' has type {onnx_type}, which has no dtype in ortserve")
        return cls.of(name, dtype, dims)

    @property
    def dims(self) -> tuple[Dim, ...]:
        """The shape with each named dynamic dimension as its name: ``("batch", 64)``."""
        names = self.dim_names or ("",) * len(self.shape)
        return tuple(n or d for d, n in zip(self.shape, names, strict=True))

    def describe(self) -> str:
        """``float32 [-1, 64]``, or with names ``int64 [batch, sequence]``."""
        return f"{self.dtype} [{', '.join(str(d) for d in self.dims)}]"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.dims)}
