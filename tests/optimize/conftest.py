"""The ``mlp`` fixture: a 64-48-10 MLP saved as ONNX, with evaluation data and two bad data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.optimize.common import mlp_model


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mlp")
    model, w = mlp_model()
    onnx.save(model, d / "mlp.onnx")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 64)).astype(np.float32)
    logits = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
    np.savez(d / "eval.npz", input=x, labels=logits.argmax(1))
    np.savez(d / "wrong.npz", features=x)
    np.savez(d / "badshape.npz", input=x[:, :32])
    return {
        "model": d / "mlp.onnx",
        "eval": d / "eval.npz",
        "wrong": d / "wrong.npz",
        "badshape": d / "badshape.npz",
    }
