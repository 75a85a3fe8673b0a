"""The step registry: each step is a small function with a typed config, registered by name.

A step is ``run(artifact, config, ctx, out_dir) -> artifact``: it reads one artifact (an ONNX file or a torch
module), writes what it makes under ``out_dir`` and returns the new artifact. Heavy libraries are imported inside
the functions so that listing steps (``ortserve-optimize --list-steps``) stays instant.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ortserve.optimize.errors import OptimizeError

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


def _check_type(step: str, key: str, value: Any, hint: Any) -> Any:
    """Accept TOML/CLI values for a config field; ints are fine where floats are wanted."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(step, key, value, a)
            except OptimizeError:
                continue
        raise OptimizeError(f"step {step!r}: parameter {key}={value!r} has the wrong type (wants {hint})")
    if origin is list:
        if not isinstance(value, list):
            raise OptimizeError(f"step {step!r}: parameter {key} wants a list, got {value!r}")
        return [_check_type(step, key, v, args[0]) if args else v for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise OptimizeError(f"step {step!r}: parameter {key} wants true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptimizeError(f"step {step!r}: parameter {key} wants an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise OptimizeError(f"step {step!r}: parameter {key} wants {hint.__name__}, got {value!r}")
    return value


def make_config(name: str, params: dict[str, Any]) -> Any:
    """Build a step's config from recipe parameters; unknown steps or parameters are errors."""
    _load_all()
    if name not in REGISTRY:
        raise OptimizeError(f"unknown step {name!r}; steps: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name].config
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise OptimizeError(
            f"step {name!r}: unknown parameter {unknown[0]!r}; parameters: {', '.join(sorted(fields)) or 'none'}"
        )
    values = {k: _check_type(name, k, v, hints[k]) for k, v in params.items()}
    cfg = cls(**values)
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


def out_file(out_dir: Path, name: str = "model.onnx") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / name
