"""What an optimize run found: one :class:`VariantResult` per variant and the :class:`RunResult` around them
(the pipeline fills them in; the report and the canary proposal read them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunResult", "VariantResult"]


@dataclass
class VariantResult:
    name: str
    steps: list[dict[str, Any]]
    path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    speedup: dict[str, float] = field(default_factory=dict)
    accepted: bool = False
    reasons: list[str] = field(default_factory=list)
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps,
            "validation": self.metrics,
            "benchmark": self.bench,
            "speedup": self.speedup,
            "accepted": self.accepted,
            "reasons": self.reasons,
            "version": self.version,
        }


@dataclass
class RunResult:
    variants: list[VariantResult]
    baseline: dict[str, Any]
    report_dir: Path
    info: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return 0 if any(v.accepted for v in self.variants) else 1
