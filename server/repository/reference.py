"""Reference profiles: what a version's inputs and predictions looked like on the data it was validated
on, so that the server can tell when live traffic drifts away from it.

``<repo>/<model>/<version>/reference.json`` (``REFERENCE``) is written by ``ortserve-optimize`` (and the
demo) beside ``model.onnx`` and listed in the manifest, so its sha256 is checked like the model's::

    profile = build_reference({"input": x}, {"label": predicted}, labels=y)      # numpy arrays, rows first
    publish_version(repo, "digits", {MODEL_FILE: onnx, REFERENCE: profile.to_json().encode()})
    profile = read_reference(version_dir)                                          # None when there is none

Each input becomes features by a reduction: ``flatten`` (every element of a row is a feature, for rows
of at most ``MAX_FLAT`` elements), ``channels`` (the mean of each channel, axis 1 of a row, for images)
or ``stats`` (a row's mean, std, min and max, for long sequences). Each feature keeps quantile bin edges
and the reference's count per bin. Bin ``i`` of a feature holds the values ``v`` with exactly ``i`` edges
below them (``edges[i-1] < v <= edges[i]``); the first edge sits just under the reference's minimum and
the last is its maximum, so the first and last bins hold what the reference never saw (NaN falls in the
first). The prediction is the distribution of predicted classes (an integer label output, or the argmax
of class scores; one extra bin counts classes beyond the reference's) or, for regressors and embeddings,
binned like a feature. The JSON is written with sorted keys: the same data gives the same bytes.

    {"format": 1, "rows": 360, "bins": 10, "accuracy": 0.97,
     "inputs": [{"name": "input", "reduction": "flatten", "row_shape": [64]}],
     "features": {"names": ["input[0]", ...], "edges": [[-1e-300, 0.0, 3.0], ...], "counts": [[0, 290, ...], ...]},
     "prediction": {"output": "label", "kind": "class", "classes": 10, "counts": [35, 36, ..., 0]}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.repository.features import REDUCTIONS, Bins, ReferenceError, TensorProfile, predicted_classes
from ortserve.repository.layout import REFERENCE

__all__ = [
    "REDUCTIONS",
    "REFERENCE",
    "Bins",
    "Prediction",
    "ReferenceError",
    "ReferenceProfile",
    "TensorProfile",
    "build_reference",
    "predicted_classes",
    "read_reference",
]

FORMAT = 1
MAX_CLASSES = 1000


@dataclass
class Prediction:
    """The profiled output: ``class`` (``counts`` per class, one more for classes beyond them) or
    ``value`` (``tensor`` reduced to features and ``bins``)."""

    output: str
    kind: str
    counts: np.ndarray | None = None
    tensor: TensorProfile | None = None
    bins: Bins | None = None

    @property
    def classes(self) -> int:
        return 0 if self.counts is None else len(self.counts) - 1

    def count(self, array: np.ndarray) -> np.ndarray:
        """This output's counts over some rows: per class (``class``) or per (feature, bin) (``value``)."""
        if self.counts is not None:
            classes = np.clip(predicted_classes(array), 0, self.classes)
            return np.bincount(classes, minlength=self.classes + 1)
        assert self.tensor is not None and self.bins is not None
        return self.bins.count(self.tensor.extract(array if array.ndim > 1 else array.reshape(-1, 1)))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"output": self.output, "kind": self.kind}
        if self.counts is not None:
            d.update(classes=self.classes, counts=[int(c) for c in self.counts])
        if self.tensor is not None and self.bins is not None:
            d.update(tensor=self.tensor.to_dict(), bins=self.bins.to_dict())
        return d


@dataclass
class ReferenceProfile:
    rows: int
    bins: int
    inputs: list[TensorProfile]
    features: Bins
    prediction: Prediction | None = None
    accuracy: float | None = None

    def input_features(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """float64 [rows, features] of a request's (or a batch's) inputs; ReferenceError when they do not fit."""
        parts = []
        for t in self.inputs:
            if t.name not in inputs:
                raise ReferenceError(f"input '{t.name}' is missing")
            parts.append(t.extract(inputs[t.name]))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "format": FORMAT,
            "rows": self.rows,
            "bins": self.bins,
            "inputs": [t.to_dict() for t in self.inputs],
            "features": self.features.to_dict(),
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "accuracy": self.accuracy,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"

    @staticmethod
    def from_json(text: str, where: str = "reference profile") -> ReferenceProfile:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ReferenceError(f"format {d.get('format')!r}, expected {FORMAT}")
            inputs = [_tensor(t) for t in d["inputs"]]
            p = d.get("prediction")
            prediction = None
            if p is not None:
                counts = None if p.get("counts") is None else np.asarray(p["counts"], np.int64)
                tensor = _tensor(p["tensor"]) if p.get("tensor") else None
                bins = Bins.from_dict(p["bins"]) if p.get("bins") else None
                if p["kind"] not in ("class", "value") or (counts is None and bins is None):
                    raise ReferenceError(f"prediction kind {p['kind']!r} without its counts")
                prediction = Prediction(p["output"], p["kind"], counts, tensor, bins)
            return ReferenceProfile(
                int(d["rows"]),
                int(d["bins"]),
                inputs,
                Bins.from_dict(d["features"]),
                prediction,
                d.get("accuracy"),
            )
        except ReferenceError as e:
            raise ReferenceError(f"{where}: {e}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ReferenceError(f"{where}: not a reference profile ({type(e).__name__}: {e})") from None


def _tensor(d: dict[str, Any]) -> TensorProfile:
    if d["reduction"] not in REDUCTIONS:
        raise ReferenceError(f"reduction {d['reduction']!r}, expected one of {', '.join(REDUCTIONS)}")
    return TensorProfile(str(d["name"]), str(d["reduction"]), tuple(int(v) for v in d["row_shape"]))


def read_reference(version_dir: Path) -> ReferenceProfile | None:
    """The version's profile, None when it has none; ReferenceError when it is unreadable."""
    path = Path(version_dir) / REFERENCE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ReferenceError(f"{path}: {e.strerror or e}") from e
    return ReferenceProfile.from_json(text, str(path))


def _prediction_kind(array: np.ndarray, labels: np.ndarray | None) -> str:
    if array.dtype.kind in "iu" and array.ndim == 1:
        return "class"
    if array.dtype.kind == "f" and array.ndim == 2 and 2 <= array.shape[1] <= MAX_CLASSES:
        rows = array.astype(np.float64)
        probabilities = bool(np.allclose(rows.sum(axis=1), 1.0, atol=1e-3) and (rows >= 0).all())
        unit = bool(np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3))
        if labels is not None or probabilities or (not unit and array.shape[1] <= 100):
            return "class"
    return "value"


def build_reference(
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray] | None = None,
    *,
    prediction: str | None = None,
    labels: np.ndarray | None = None,
    bins: int = 10,
    reductions: Mapping[str, str] | None = None,
) -> ReferenceProfile:
    """Profile ``inputs`` (and the model's ``outputs`` on them) into bins of at most ``bins`` quantiles.

    ``prediction``: the output to profile (default: the first integer label output, else the first
    floating-point one); ``labels``: the true classes, for the reference accuracy; ``reductions``:
    input name -> flatten | channels | stats (default: by shape). ReferenceError when nothing fits."""
    if bins < 2:
        raise ReferenceError(f"bins {bins}, expected at least 2")
    reductions = dict(reductions or {})
    unknown = sorted(set(reductions) - set(inputs))
    if unknown:
        raise ReferenceError(f"reduction for '{unknown[0]}', which is not an input ({', '.join(inputs)})")
    tensors, columns = [], []
    for name, array in inputs.items():
        if array.dtype.kind not in "biuf":
            continue  # strings are not binned
        t = TensorProfile.default(name, array)
        if name in reductions:
            if reductions[name] not in REDUCTIONS:
                raise ReferenceError(
                    f"reduction {reductions[name]!r} for '{name}', expected one of {REDUCTIONS}"
                )
            t = TensorProfile(name, reductions[name], t.row_shape)
        tensors.append(t)
        columns.append(t.extract(array))
    if not tensors:
        raise ReferenceError("no numeric input to profile")
    x = np.concatenate(columns, axis=1)
    names = [n for t in tensors for n in t.feature_names()]
    profile = ReferenceProfile(len(x), bins, tensors, Bins.fit(x, names, bins))
    outputs = dict(outputs or {})
    if prediction is not None and prediction not in outputs:
        raise ReferenceError(f"prediction output '{prediction}' is not an output ({', '.join(outputs)})")
    if prediction is None:
        ints = [n for n, a in outputs.items() if a.dtype.kind in "iu" and a.ndim == 1]
        floats = [n for n, a in outputs.items() if a.dtype.kind == "f" and a.ndim >= 1]
        prediction = next(iter(ints or floats), None)
    if prediction is None:
        return profile
    out = outputs[prediction]
    if _prediction_kind(out, labels) == "class":
        classes = predicted_classes(out)
        width = max(out.shape[1] if out.ndim == 2 else int(classes.max(initial=0)) + 1, 2)
        if labels is not None:
            width = max(width, int(np.max(labels, initial=0)) + 1)
            profile.accuracy = float(np.mean(classes == labels))
        counts = np.bincount(np.clip(classes, 0, width), minlength=width + 1)
        profile.prediction = Prediction(prediction, "class", counts.astype(np.int64))
    else:
        t = TensorProfile.default(prediction, out if out.ndim > 1 else out.reshape(-1, 1))
        values = t.extract(out if out.ndim > 1 else out.reshape(-1, 1))
        profile.prediction = Prediction(
            prediction, "value", None, t, Bins.fit(values, t.feature_names(), bins)
        )
    return profile
