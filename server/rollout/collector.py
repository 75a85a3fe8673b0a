"""The rollout's eyes: a core hook (and a listener of the feedback join and the shadow mirror) that counts,
for each model under rollout, what its two arms did. Every process has one (under ``--workers`` each
worker counts its own share; the leader adds them up from their tally files).

Counted: requests the model's flag routed (a request naming a version, or a variant by ``x-variant``, is
not part of the split and is left out), by the version that served them; outcomes (every outcome but
``ok`` and ``cancelled`` is an error: invalid input lands on both arms alike when they are equivalent,
and a candidate that refuses inputs the baseline takes must show); latency of ok requests against the
SLO; predicted classes (reduced off the event loop); feedback rows joined to each arm; shadow rows
compared with the candidate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ortserve.core import Completed, FeedbackItem, FeedbackResult, prediction_of
from ortserve.errors import CANCELLED, OK
from ortserve.rollout.router import OVERRIDE_ATTRIBUTE
from ortserve.rollout.tally import Arm, Tally

__all__ = ["Collector"]

MAX_PENDING = 4096  # responses waiting for their predicted class to be read; more are not sampled


@dataclass
class _Watch:
    rollout: str
    baseline: str
    candidate: str
    slo_s: float
    tally: Tally = field(default_factory=Tally)

    def arm(self, version: str) -> Arm | None:
        if version == self.candidate:
            return self.tally.arms["candidate"]
        if version == self.baseline:
            return self.tally.arms["baseline"]
        return None


class Collector:
    def __init__(self) -> None:
        self._watches: dict[str, _Watch] = {}
        self._pending: list[tuple[Arm, dict[str, np.ndarray]]] = []

    # -- what to watch -----------------------------------------------------------------------------
    def watch(self, model: str, rollout: str, baseline: str, candidate: str, slo_s: float) -> None:
        """Count for ``rollout`` of ``model`` (from zero, unless it is already watched)."""
        w = self._watches.get(model)
        if w is not None and w.rollout == rollout:
            w.slo_s = slo_s
            return
        self._watches[model] = _Watch(rollout, baseline, candidate, slo_s)

    def unwatch(self, model: str) -> None:
        self._watches.pop(model, None)

    def watching(self) -> dict[str, str]:
        """Model -> the rollout it counts for."""
        return {model: w.rollout for model, w in self._watches.items()}

    # -- counting, on the event loop -------------------------------------------------------------
    def on_complete(self, event: Completed) -> None:
        route = event.route
        if route is None or not self._watches:
            return
        request = event.request
        w = self._watches.get(request.model)
        if w is None or request.version or OVERRIDE_ATTRIBUTE in request.attributes:
            return
        arm = w.arm(route.version.version)
        if arm is None or event.outcome == CANCELLED:
            return
        ok = event.outcome == OK
        arm.add_request(ok, event.duration_s, event.duration_s > w.slo_s)
        if ok and event.response is not None and len(self._pending) < MAX_PENDING:
            self._pending.append((arm, event.response.outputs))

    def on_feedback(self, item: FeedbackItem, result: FeedbackResult) -> None:
        if result.status not in ("correct", "incorrect"):
            return
        w = self._watches.get(result.model)
        arm = w.arm(result.version) if w is not None else None
        if arm is not None:
            arm.labelled += result.rows
            arm.incorrect += result.rows - result.correct

    def on_shadow(
        self, model: str, primary: str, shadow: str, rows: int, agreed: int, failed: bool = False
    ) -> None:
        """A mirrored request compared (``rows``, ``agreed`` top-1), or failed on the shadow version."""
        w = self._watches.get(model)
        if w is None or shadow != w.candidate or primary != w.baseline:
            return
        arm = w.tally.arms["candidate"]
        if failed:
            arm.compared += 1
            arm.disagreed += 1
        else:
            arm.compared += rows
            arm.disagreed += rows - agreed

    # -- reading -----------------------------------------------------------------------------------
    async def settle(self) -> None:
        """Read the predicted classes of the responses noted since the last call (in a worker thread)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        labels = await asyncio.get_running_loop().run_in_executor(None, _classes, pending)
        for (arm, _), found in zip(pending, labels):
            if found is not None:
                arm.add_classes(found)

    def tally(self, model: str, rollout: str) -> Tally | None:
        """A copy of what was counted for ``rollout`` so far (None when not watching it)."""
        w = self._watches.get(model)
        if w is None or w.rollout != rollout:
            return None
        return w.tally.copy()


def _classes(pending: list[tuple[Arm, dict[str, np.ndarray]]]) -> list[Any]:
    out: list[Any] = []
    for _, outputs in pending:
        try:
            found = prediction_of(outputs)
        except (ValueError, TypeError):
            found = None
        out.append(found[1].tolist() if found is not None and found[0] == "class" else None)
    return out
