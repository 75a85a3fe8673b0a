"""The feedback seam: ground truth for predictions the core made, joined by request id.

    results = await core.feedback([FeedbackItem("a1b2-7", labels=(3,))])
    results[0].status        # "correct" / "incorrect" / "scored" / "unknown" / "duplicate" / "invalid"

The core asks its ``FeedbackJoin`` (``ortserve.monitor.FeedbackIndex`` is a core hook that remembers
recent predictions); ``NoFeedback`` is the null object used when the join is off, and refuses.
Unknown and expired ids are results, not errors: ground truth often arrives after the prediction is
forgotten, and the caller cannot do better by retrying.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ortserve.errors import FailedPrecondition

__all__ = ["FeedbackItem", "FeedbackJoin", "FeedbackResult", "NoFeedback", "prediction_of"]


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """Ground truth for one request: one class label per row it had (classifiers), or one target value
    per row (or per row and output value, row-major; regressors); an optional reward for the request."""

    request_id: str
    labels: tuple[int, ...] = ()
    targets: tuple[float, ...] = ()
    reward: float | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    request_id: str
    status: str  # correct | incorrect (every row right, or not) | scored | unknown | duplicate | invalid
    model: str = ""
    version: str = ""
    variant: str = ""
    rows: int = 0
    correct: int = 0  # rows whose label matched the prediction
    message: str = ""  # why an item is invalid


class FeedbackJoin(Protocol):
    async def feedback(self, items: Sequence[FeedbackItem]) -> list[FeedbackResult]: ...


class NoFeedback:
    """The join is off (``--feedback-index-size 0``)."""

    async def feedback(self, items: Sequence[FeedbackItem]) -> list[FeedbackResult]:
        raise FailedPrecondition(
            "feedback is off on this server (--feedback-index-size 0): it keeps no predictions to join"
        )


def prediction_of(outputs: dict[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
    """("class", int64 [rows]) or ("value", float64 [rows]) from a response's outputs; None when
    neither can be told (no numeric output, or several values per row that are not class scores)."""
    for a in outputs.values():
        if a.dtype.kind in "iu" and a.ndim == 1:
            return "class", a.astype(np.int64)
    for a in outputs.values():
        if a.dtype.kind == "f" and a.ndim >= 1:
            if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
                return "value", a.reshape(-1).astype(np.float64)
            if a.ndim == 2:
                return "class", a.argmax(axis=1).astype(np.int64)
            return None
    return None
