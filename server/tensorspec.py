"""One tensor of a model's signature, shared by the server's core and the optimize toolchain.

A dimension is a size or dynamic (-1). Where the model names a dynamic dimension (``"batch"``,
``"sequence"``), ``dim_names`` keeps the name, so optimize can ask for ``--dim sequence=128``::

    TensorSpec.of("input_ids", "int64", ("batch", "sequence"))   # shape (-1, -1), named
    TensorSpec("input", "float32", (-1, 64)).describe()          # 'float32 [-1, 64]'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ortserve.dtypes import ONNX_TYPES

__all__ = ["Dim", "TensorSpec"]

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
