"""What every step can see besides its own config: data, signature, seed, CPU, hints from the source."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.dtypes import TensorSpec
from ortserve.optimize.specs import Dataset

__all__ = ["Context", "Progress"]


class Progress:
    """Progress lines on stderr for long steps; silent with ``--quiet``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"ortserve-optimize: {msg}", file=sys.stderr, flush=True)


@dataclass
class Context:
    workdir: Path
    seed: int
    specs: list[TensorSpec]
    dims: dict[str, int]
    calibration: Dataset
    train: Dataset | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    # What the source says about itself, e.g. {"model_type": "bert", "num_heads": 12, "hidden_size": 384}.
    hints: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = field(default_factory=Progress)
    # The unmodified source module (torch sources), for fine-tuning by distillation when there are no labels.
    reference_module: Any = None
