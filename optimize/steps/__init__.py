"""The step registry: each step is a small function with a typed config, registered by name.

A step is ``run(artifact, config, ctx, out_dir) -> artifact``: it reads one artifact (an ONNX file or a torch
module), writes what it makes under ``out_dir`` and returns the new artifact. Heavy libraries are imported inside
the functions so that listing steps (``ortserve-optimize --list-steps``) stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ortserve.optimize.errors import OptimizeError
from ortserve.repository import MODEL_FILE
from ortserve.schema import from_table

__all__ = ["REGISTRY", "StepDef", "get_step", "make_config", "register"]


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


def make_config(name: str, params: dict[str, Any]) -> Any:
    """Build a step's config from recipe parameters (checked by :func:`ortserve.schema.from_table`: unknown
    parameters and wrong types are one-line errors), then run its ``validate()``."""
    _load_all()
    if name not in REGISTRY:
        raise OptimizeError(f"unknown step {name!r}; steps: {', '.join(sorted(REGISTRY))}")
    cfg = from_table(REGISTRY[name].config, params, f"step {name!r}", key="parameter", error=OptimizeError)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def get_step(name: str) -> StepDef:
    _load_all()
    if name not in REGISTRY:
        raise OptimizeError(f"unknown step {name!r}; steps: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _load_all() -> None:
    from ortserve.optimize.steps import onnx_steps, torch_steps  # noqa: F401  (registration side effect)


def out_file(out_dir: Path, name: str = MODEL_FILE) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / name
