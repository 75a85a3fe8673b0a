"""A model version's signature and the checks every request passes before it is queued."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ortserve.dtypes import TensorSpec, dtype_name
from ortserve.errors import InvalidInput, quoted
from ortserve.tensors import Tensor

__all__ = ["Signature", "TensorSpec"]  # TensorSpec lives in ortserve.dtypes (optimize uses it too)


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # > 0: dimension 0 of every input and output is the batch dimension, at most this large.
    max_batch_size: int
    max_input_elements: int

    def input(self, name: str) -> TensorSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def validate(self, inputs: Mapping[str, Tensor]) -> int:
        """Check names, dtypes, ranks, dims, the batch limit and element counts, from the tensors'
        headers (arrays or ``ortserve.tensors.Encoded``: nothing is decoded here).

        Returns the request's batch size (0 for models without a batch dimension).
        Raises InvalidInput naming the input and saying expected vs got.
        """
        expected_names = [s.name for s in self.inputs]
        for name in inputs:
            if self.input(name) is None:
                raise InvalidInput(
                    f"unknown input {quoted(name)}, expected inputs: {', '.join(expected_names)}"
                )
        batch = -1
        first = ""
        for spec in self.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise InvalidInput(f"missing input '{spec.name}' ({spec.describe()})")
            got = dtype_name(array.dtype)
            if got != spec.dtype:
                raise InvalidInput(f"input '{spec.name}': dtype {got}, expected {spec.dtype}")
            if array.ndim != len(spec.shape):
                raise InvalidInput(
                    f"input '{spec.name}': shape {list(array.shape)} has rank {array.ndim}, "
                    f"expected rank {len(spec.shape)} ({list(spec.shape)})"
                )
            for axis, (want, have) in enumerate(zip(spec.shape, array.shape)):
                if want >= 0 and want != have:
                    raise InvalidInput(
                        f"input '{spec.name}': dimension {axis} is {have}, expected {want} "
                        f"(shape {list(array.shape)}, expected {list(spec.shape)})"
                    )
            if array.size > self.max_input_elements:
                raise InvalidInput(
                    f"input '{spec.name}': {array.size} elements, expected at most {self.max_input_elements}"
                )
            if self.max_batch_size > 0:
                rows = array.shape[0]
                if batch < 0:
                    batch, first = rows, spec.name
                elif rows != batch:
                    raise InvalidInput(
                        f"input '{spec.name}': batch size {rows}, expected {batch} like input '{first}'"
                    )
        if self.max_batch_size > 0:
            if batch < 1:
                raise InvalidInput(f"input '{first}': batch size {batch}, expected at least 1")
            if batch > self.max_batch_size:
                raise InvalidInput(
                    f"input '{first}': batch size {batch}, expected at most max_batch_size {self.max_batch_size}"
                )
            return batch
        return 0
