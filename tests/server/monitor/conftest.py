"""The digits demo as the monitoring tests' model: built once per session (a few seconds), then copied
into each test module's repository with its reference profile."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ortserve.optimize.demo import SEED, build

__all__ = ["copy_version", "digits_data", "train_split"]


@pytest.fixture(scope="session")
def demo_version(tmp_path_factory) -> Path:
    """digits version 1 as the demo publishes it: model.onnx, reference.json, manifest.json."""
    repo = tmp_path_factory.mktemp("demo")
    return build(repo, quiet=True)


def copy_version(source: Path, repo: Path, version: str, config: str | None = None) -> Path:
    target = repo / "digits" / version
    shutil.copytree(source, target)
    if config is not None:
        (repo / "digits" / "config.toml").write_text(config)
    return target


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def train_split() -> tuple[np.ndarray, np.ndarray]:
    """The rows the demo trained on (its reference profile is the other 20%, the test split)."""
    from sklearn.model_selection import train_test_split

    x, y = digits_data()
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    return x_train, y_train
