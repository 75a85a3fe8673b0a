"""Tensors as they come off the wire: the header is read at once, the values only when needed.

A codec turns each input of a request into an ``np.ndarray`` when that costs nothing (raw numeric
bytes: ``np.frombuffer``, no copy) and into an ``Encoded`` otherwise (BYTES tensors, V2 typed
contents): its dtype, shape and size come from the header, its values from ``decode()``. Both
answer ``dtype``, ``shape``, ``ndim``, ``size`` and ``nbytes``, which is all that validating a
request against a model's signature reads, so a request for an unknown model, or with the wrong
dtype or shape, is refused before any of its values are decoded (``ortserve.core`` decodes what
passed, off the event loop when it is large).

    t = Encoded("text", np.dtype(object), (2,), nbytes=200, decode=lambda: np.array(["a", "b"], object))
    t.shape, t.size      # (2,), 2: from the header
    t.decode()           # the array
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["STR_OVERHEAD", "Encoded", "Tensor", "once", "request_nbytes"]

# Bytes a decoded string element holds beyond its characters: a Python str object (49 bytes for
# ASCII) and its pointer in the object array. 30M empty strings are 1.9 GB once decoded.
STR_OVERHEAD = 64


class Encoded:
    """One tensor whose values are still in the request message.

    ``nbytes`` is the memory the tensor holds once decoded, the wire copy included (for BYTES an
    estimate: ``STR_OVERHEAD`` per element plus its characters): what admission control counts.
    It may be given as a function, called once when first asked (BYTES: it reads the data's
    length, and raises InvalidInput when the data cannot hold the header's elements).
    ``inline``: decoding costs a copy at memory speed (raw numbers), never worth a thread."""

    __slots__ = ("_decode", "_nbytes", "dtype", "inline", "name", "shape")

    def __init__(
        self,
        name: str,
        dtype: np.dtype,
        shape: tuple[int, ...],
        nbytes: int | Callable[[], int],
        decode: Callable[[], np.ndarray],
        inline: bool = False,
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self._nbytes = nbytes
        self._decode = decode
        self.inline = inline

    @property
    def nbytes(self) -> int:
        if not isinstance(self._nbytes, int):
            self._nbytes = self._nbytes()
        return self._nbytes

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count

    def decode(self) -> np.ndarray:
        """The values, shaped as the header says; raises InvalidInput when they do not fit it."""
        return self._decode()

    def __repr__(self) -> str:
        return f"Encoded({self.name!r}, {self.dtype}, {list(self.shape)})"


Tensor = np.ndarray | Encoded


def once(fetch: Callable[[], bytes]) -> Callable[[], bytes]:
    """``fetch`` called at most once (reading a protobuf bytes field copies it each time)."""
    kept: list[bytes] = []

    def get() -> bytes:
        if not kept:
            kept.append(fetch())
        return kept[0]

    return get


def request_nbytes(inputs: Mapping[str, Tensor]) -> int:
    """The memory a request's inputs hold once decoded (``Encoded.nbytes``; an array's own)."""
    return sum(int(t.nbytes) for t in inputs.values())
