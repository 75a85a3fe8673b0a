"""The reference profile each published version carries (``reference.json``, the baseline the server
measures drift against), built from the data the version was validated on: the eval data's inputs and
the variant's own outputs on them (and the labels, when the data has them, for the reference accuracy).
The format is :mod:`ortserve.repository.reference`'s; the ``[reference]`` recipe table configures it.

Synthetic eval data (no ``--eval-data``) makes no profile: drift against random inputs would only
measure how unlike random real traffic is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.recipe import ReferenceOptions
from ortserve.optimize.specs import Dataset
from ortserve.repository.reference import ReferenceError, build_reference

__all__ = ["output_names", "reference_json"]


def output_names(path: Path) -> list[str]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [o.name for o in sess.get_outputs()]


def reference_json(
    path: Path, outputs: list[np.ndarray], data: Dataset, options: ReferenceOptions
) -> bytes | None:
    """The profile of the variant at ``path`` whose ``outputs`` on ``data`` are given; None when the data
    is synthetic or profiles are off. OptimizeError for options that do not fit the model."""
    if not options.enabled or data.synthetic:
        return None
    named = dict(zip(output_names(path), outputs))
    try:
        profile = build_reference(
            data.inputs,
            named,
            prediction=options.prediction,
            labels=data.labels,
            bins=options.bins,
            reductions=options.reduce,
        )
    except ReferenceError as e:
        raise OptimizeError(f"reference profile: {e}") from e
    return profile.to_json().encode()
