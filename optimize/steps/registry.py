"""The step registry: each step registers its function and typed config here, by name (see
:mod:`ortserve.optimize.steps`). Kept apart from the package so that step modules import it without
importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ortserve.repository import MODEL_FILE

__all__ = ["REGISTRY", "StepDef", "out_file", "register"]


@dataclass(frozen=True)
class StepDef:
    name: str
    config: type
    run: Callable[..., Any]
    accepts: str  # "onnx", "torch" or "any"
    summary: str


REGISTRY: dict[str, StepDef] = {}


def register(
    name: str, config: type, accepts: str, summary: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[name] = StepDef(name, config, fn, accepts, summary)
        return fn

    return wrap


def out_file(out_dir: Path, name: str = MODEL_FILE) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / name
