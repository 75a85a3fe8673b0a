"""What steps pass along: an ONNX file on disk, or a PyTorch module with its input signature."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.dtypes import TensorSpec

__all__ = ["Artifact", "OnnxArtifact", "TorchArtifact"]


@dataclass
class OnnxArtifact:
    path: Path

    kind = "onnx"


@dataclass
class TorchArtifact:
    """A module in eval mode; ``output_names`` name its outputs in order (a tuple output gives several)."""

    module: Any
    specs: list[TensorSpec]
    output_names: list[str] = field(default_factory=lambda: ["output"])
    # The torch.export program the module came from (.pt2 sources): exported as is, with its own dynamic dims.
    program: Any = None

    kind = "torch"


Artifact = OnnxArtifact | TorchArtifact
