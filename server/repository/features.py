"""How tensors become drift features and bin counts (the parts of a reference profile that the server
runs on every sampled batch): :class:`TensorProfile` reduces a tensor's rows to features, :class:`Bins`
holds per-feature quantile edges and counts and counts new rows with one ``np.bincount``. See
:mod:`ortserve.repository.reference` for the file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAX_CHANNELS",
    "MAX_FLAT",
    "REDUCTIONS",
    "Bins",
    "ReferenceError",
    "TensorProfile",
    "predicted_classes",
]

REDUCTIONS = ("flatten", "channels", "stats")
MAX_FLAT = 256  # a row with more elements is reduced (channels or stats) rather than flattened
MAX_CHANNELS = 64
_STATS = ("mean", "std", "min", "max")


class ReferenceError(ValueError):
    """A reference profile that cannot be read, or data that does not fit one."""


@dataclass(frozen=True)
class TensorProfile:
    """How one tensor (rows first) becomes features."""

    name: str
    reduction: str
    row_shape: tuple[int, ...]

    @staticmethod
    def default(name: str, array: np.ndarray) -> TensorProfile:
        row = tuple(int(d) for d in array.shape[1:])
        size = int(np.prod(row)) if row else 1
        if size <= MAX_FLAT and (array.dtype.kind == "f" or size <= 16):
            return TensorProfile(name, "flatten", row)
        if len(row) >= 2 and row[0] <= MAX_CHANNELS:
            return TensorProfile(name, "channels", row)
        return TensorProfile(name, "stats", row)

    def feature_names(self) -> list[str]:
        if self.reduction == "flatten":
            size = int(np.prod(self.row_shape)) if self.row_shape else 1
            return [f"{self.name}[{i}]" for i in range(size)]
        if self.reduction == "channels":
            return [f"{self.name}:c{i}" for i in range(self.row_shape[0])]
        return [f"{self.name}:{s}" for s in _STATS]

    def extract(self, array: np.ndarray) -> np.ndarray:
        """The features of every row: float64 [rows, features]; ReferenceError when the shape does not fit."""
        if array.ndim == 0:
            raise ReferenceError(f"'{self.name}': a scalar has no rows")
        rows = array.shape[0]
        if self.reduction == "flatten":
            if tuple(array.shape[1:]) != self.row_shape:
                raise ReferenceError(
                    f"'{self.name}': rows of shape {list(array.shape[1:])}, profiled {list(self.row_shape)}"
                )
            return array.reshape(rows, -1).astype(np.float64)
        if self.reduction == "channels":
            if array.ndim < 3 or array.shape[1] != self.row_shape[0]:
                raise ReferenceError(
                    f"'{self.name}': {list(array.shape)} has not {self.row_shape[0]} channels"
                )
            return array.reshape(rows, array.shape[1], -1).astype(np.float64).mean(axis=2)
        flat = array.reshape(rows, -1).astype(np.float64)
        if flat.shape[1] == 0:
            raise ReferenceError(f"'{self.name}': rows are empty")
        return np.stack([flat.mean(1), flat.std(1), flat.min(1), flat.max(1)], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction, "row_shape": list(self.row_shape)}


@dataclass
class Bins:
    """Per feature: quantile bin edges (padded with +inf to one width) and the reference's count per bin."""

    names: list[str]
    edges: np.ndarray  # float64 [features, K]
    counts: np.ndarray  # int64 [features, K + 1]

    @staticmethod
    def fit(x: np.ndarray, names: list[str], bins: int) -> Bins:
        quantiles = np.linspace(0.0, 1.0, bins + 1)
        per_feature = []
        for column in x.T:
            finite = column[np.isfinite(column)]
            if finite.size == 0:
                per_feature.append(np.array([0.0]))
                continue
            q = np.unique(np.quantile(finite, quantiles))
            per_feature.append(np.concatenate([[np.nextafter(q[0], -np.inf)], q]))
        width = max((len(e) for e in per_feature), default=1)
        edges = np.full((len(names), width), np.inf)
        for i, e in enumerate(per_feature):
            edges[i, : len(e)] = e
        b = Bins(names, edges, np.zeros((len(names), width + 1), np.int64))
        b.counts = b.count(x)
        return b

    def count(self, x: np.ndarray) -> np.ndarray:
        """Counts per (feature, bin) of ``x`` [rows, features]: one ``np.bincount`` for all of them."""
        features, width = self.edges.shape
        index = (x[:, :, None] > self.edges[None, :, :]).sum(axis=2)
        index += np.arange(features) * (width + 1)
        return np.bincount(index.ravel(), minlength=features * (width + 1)).reshape(features, width + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "edges": [[float(v) for v in row if np.isfinite(v)] for row in self.edges],
            "counts": [
                [int(c) for c in row[: int(np.isfinite(e).sum()) + 1]]
                for row, e in zip(self.counts, self.edges)
            ],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Bins:
        names, edges, counts = list(d["names"]), d["edges"], d["counts"]
        if not (len(names) == len(edges) == len(counts)):
            raise ReferenceError("features: names, edges and counts differ in length")
        width = max((len(e) for e in edges), default=1)
        e = np.full((len(names), width), np.inf)
        c = np.zeros((len(names), width + 1), np.int64)
        for i, (row_e, row_c) in enumerate(zip(edges, counts)):
            if len(row_c) != len(row_e) + 1:
                raise ReferenceError(f"feature {names[i]}: {len(row_e)} edges need {len(row_e) + 1} counts")
            e[i, : len(row_e)] = row_e
            c[i, : len(row_c)] = row_c
        return Bins(names, e, c)


def predicted_classes(array: np.ndarray) -> np.ndarray:
    """The predicted class of each row: an integer label output as it is, the argmax of class scores."""
    if array.dtype.kind in "iu" and array.ndim == 1:
        return array.astype(np.int64)
    if array.ndim == 2 and array.shape[1] >= 2:
        return array.argmax(axis=1).astype(np.int64)
    raise ReferenceError(f"cannot tell classes from an output of shape {list(array.shape)}")
