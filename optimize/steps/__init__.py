"""The steps: each is a small function with a typed config, registered by name (:mod:`.registry`).

A step is ``run(artifact, config, ctx, out_dir) -> artifact``: it reads one artifact (an ONNX file or a torch
module), writes what it makes under ``out_dir`` and returns the new artifact. They live in :mod:`.onnx_steps`
(graph-optimize, fp16), :mod:`.quantize` (quantize-dynamic, quantize-static) and :mod:`.torch_steps` (export,
prune-structured, prune-magnitude, finetune); a new step is one config class and one function in one of them.
Heavy libraries are imported inside the functions so that listing steps (``ortserve-optimize --list-steps``)
stays instant.
"""

from __future__ import annotations

from typing import Any

from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.steps.registry import REGISTRY, StepDef, out_file, register
from ortserve.schema import from_table

__all__ = ["REGISTRY", "StepDef", "get_step", "make_config", "out_file", "register"]


def make_config(name: str, params: dict[str, Any]) -> Any:
    """Build a step's config from recipe parameters (checked by :func:`ortserve.schema.from_table`: unknown
    parameters and wrong types are one-line errors), then run its ``validate()``."""
    _load_all()
    if name not in REGISTRY:
        raise OptimizeError(f"unknown step {name!r}; steps: {', '.join(sorted(REGISTRY))}")
    cfg: Any = from_table(
        REGISTRY[name].config, params, f"step {name!r}", key="parameter", error=OptimizeError
    )
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
    from ortserve.optimize.steps import onnx_steps, quantize, torch_steps  # noqa: F401  (they register)
