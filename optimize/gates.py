"""Acceptance gates: a variant that fails one is rejected, with the reason, and not published."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Gates"]


@dataclass
class Gates:
    """``max_accuracy_drop`` is in percentage points (against labels; without labels, top-1 disagreement
    with the reference stands in for it); ``min_cosine`` is the mean cosine; ``min_speedup`` is p50 latency
    of the baseline over the variant's at the gate batch size."""

    max_accuracy_drop: float | None = None
    min_cosine: float | None = None
    min_speedup: float | None = None

    def merged(self, other: dict[str, Any]) -> Gates:
        values = {k: v for k, v in vars(self).items()}
        values.update({k: v for k, v in other.items() if k in values})
        return Gates(**values)

    def check(self, metrics: dict[str, Any], speedup: float | None) -> list[str]:
        """The reasons the variant is rejected (empty: accepted)."""
        if "error" in metrics:
            return [metrics["error"]]
        reasons = []
        if self.max_accuracy_drop is not None:
            drop = metrics.get("accuracy_drop")
            if drop is None and "top1_agreement" in metrics:
                drop = (1.0 - metrics["top1_agreement"]) * 100
            if drop is not None and drop > self.max_accuracy_drop:
                reasons.append(f"accuracy drop {drop:.2f} points > {self.max_accuracy_drop:g}")
        if self.min_cosine is not None and metrics["cosine"] < self.min_cosine:
            reasons.append(f"cosine {metrics['cosine']:.4f} < {self.min_cosine:g}")
        if self.min_speedup is not None and speedup is not None and speedup < self.min_speedup:
            reasons.append(f"speed-up {speedup:.2f}x < {self.min_speedup:g}x")
        return reasons
