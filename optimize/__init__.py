"""optimize: prune, export, quantize, validate, benchmark and publish ONNX model variants.

The CLI (``python -m optimize``) translates flags or a TOML recipe into :func:`optimize.pipeline.run`. Heavy
libraries (onnxruntime, torch) are imported by the modules that need them, not here, so ``--help`` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OptimizeError", "Recipe", "VariantSpec", "load_recipe", "run"]

if TYPE_CHECKING:
    from .errors import OptimizeError
    from .pipeline import run
    from .recipe import Recipe, VariantSpec, load_recipe


def __getattr__(name: str) -> Any:
    if name == "OptimizeError":
        from .errors import OptimizeError

        return OptimizeError
    if name == "run":
        from .pipeline import run

        return run
    if name in ("Recipe", "VariantSpec", "load_recipe"):
        from . import recipe

        return getattr(recipe, name)
    raise AttributeError(name)
