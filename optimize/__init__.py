"""ortserve.optimize (the ``ortserve-optimize`` command): prune, export, quantize, validate, benchmark and publish ONNX model variants.

The CLI (``python -m ortserve.optimize``) translates flags or a TOML recipe into :func:`ortserve.optimize.pipeline.run`. Heavy
libraries (onnxruntime, torch) are imported by the modules that need them, not here, so ``--help`` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OptimizeError", "Recipe", "VariantSpec", "load_recipe", "run"]

if TYPE_CHECKING:
    from ortserve.optimize.errors import OptimizeError
    from ortserve.optimize.pipeline import run
    from ortserve.optimize.recipe import Recipe, VariantSpec, load_recipe


def __getattr__(name: str) -> Any:
    if name == "OptimizeError":
        from ortserve.optimize.errors import OptimizeError

        return OptimizeError
    if name == "run":
        from ortserve.optimize.pipeline import run

        return run
    if name in ("Recipe", "VariantSpec", "load_recipe"):
        from ortserve.optimize import recipe

        return getattr(recipe, name)
    raise AttributeError(name)
