"""The feedback join: ground truth that arrives later, matched to the prediction the server made.

``FeedbackIndex`` is a core hook and the core's ``FeedbackJoin``. For every request answered OK it
notes (request id, model, version, variant, a reference to the outputs) on the event loop; every
``interval`` seconds (and before each join) a worker thread reduces the outputs to the prediction
(an integer label output as it is; else the first floating-point output: the argmax of class scores,
or the value of a one-value regression), and the loop files the entries in a bounded, time-limited
index (``size`` entries, ``ttl`` seconds, oldest out first).

A join counts each row in ``ortserve_feedback_total{model,version,variant,outcome}`` (correct or
incorrect for labels, scored for targets, whose absolute errors go to ``ortserve_feedback_abs_error``)
and the reward, if any, in ``ortserve_feedback_reward``. An entry joins once: a second feedback for it is
a ``duplicate``; an id that is not (or no longer) in the index is ``unknown``; neither is an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ortserve.core import Completed, FeedbackItem, FeedbackResult, prediction_of
from ortserve.errors import OK
from ortserve.metrics import Metrics

__all__ = ["FeedbackIndex", "prediction_of"]

log = logging.getLogger("ortserve.feedback")


@dataclass(slots=True)
class _Entry:
    at: float
    model: str
    version: str
    variant: str
    kind: str  # class | value | "" (nothing to compare with)
    prediction: np.ndarray | None
    joined: bool = False


class FeedbackIndex:
    def __init__(
        self,
        metrics: Metrics,
        *,
        size: int = 100_000,
        ttl: float = 3600.0,
        interval: float = 0.5,
        on_feedback: Callable[[FeedbackItem, FeedbackResult], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.size = size
        self.ttl = ttl
        self.interval = interval
        self._on_feedback = on_feedback  # the payload log records feedback too
        self._pending: list[tuple[str, float, str, str, str, dict[str, np.ndarray]]] = []
        self._index: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = asyncio.Lock()
        self._children: dict[tuple[str, ...], Any] = {}

    # -- on the event loop -----------------------------------------------------------------------
    def on_complete(self, event: Completed) -> None:
        response = event.response
        if event.outcome != OK or response is None or len(self._pending) >= self.size:
            return
        self._pending.append(
            (
                response.request_id,
                time.monotonic(),
                response.model,
                response.version,
                response.variant,
                response.outputs,
            )
        )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feedback index update failed")

    async def flush(self) -> None:
        """File what was noted since the last flush, and let out what is too old or too many."""
        async with self._lock:
            pending, self._pending = self._pending, []
            if pending:
                entries = await asyncio.get_running_loop().run_in_executor(None, _reduce, pending)
                index = self._index
                for request_id, entry in entries:
                    index.pop(request_id, None)  # a reused id: the newest prediction counts
                    index[request_id] = entry
            horizon = time.monotonic() - self.ttl
            while self._index and (
                len(self._index) > self.size or next(iter(self._index.values())).at < horizon
            ):
                self._index.popitem(last=False)
            self.metrics.feedback_entries.set(len(self._index))

    async def feedback(self, items: Sequence[FeedbackItem]) -> list[FeedbackResult]:
        await self.flush()
        results = [self._join(item) for item in items]
        if self._on_feedback is not None:
            for item, result in zip(items, results):
                self._on_feedback(item, result)
        return results

    # -- joining -----------------------------------------------------------------------------------
    def _join(self, item: FeedbackItem) -> FeedbackResult:
        rid = item.request_id
        entry = self._index.get(rid) if rid else None
        if entry is None:
            return self._unmatched(rid, "unknown")
        if entry.joined:
            return self._unmatched(rid, "duplicate", entry)
        problem = _problem(item, entry)
        if problem:
            return self._unmatched(rid, "invalid", entry, problem)
        entry.joined = True
        labels = (entry.model, entry.version, entry.variant)
        prediction = entry.prediction
        assert prediction is not None
        rows = len(prediction)
        if item.labels:
            correct = int((prediction == np.asarray(item.labels, np.int64)).sum())
            self._child(self.metrics.feedback, *labels, "correct").inc(correct)
            self._child(self.metrics.feedback, *labels, "incorrect").inc(rows - correct)
            status = "correct" if correct == rows else "incorrect"
        else:
            errors = np.abs(prediction - np.asarray(item.targets, np.float64))
            self._child(self.metrics.feedback, *labels, "scored").inc(rows)
            histogram = self._child(self.metrics.feedback_error, *labels)
            for e in errors:
                histogram.observe(float(e))
            correct, status = 0, "scored"
        if item.reward is not None:
            self._child(self.metrics.feedback_reward, *labels).observe(item.reward)
        return FeedbackResult(rid, status, *labels, rows=rows, correct=correct)

    def _unmatched(
        self, rid: str, reason: str, entry: _Entry | None = None, message: str = ""
    ) -> FeedbackResult:
        self._child(self.metrics.feedback_unmatched, reason).inc()
        if entry is None:
            return FeedbackResult(rid, reason, message=message)
        rows = 0 if entry.prediction is None else len(entry.prediction)
        return FeedbackResult(rid, reason, entry.model, entry.version, entry.variant, rows, message=message)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (str(id(metric)), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def _problem(item: FeedbackItem, entry: _Entry) -> str:
    if bool(item.labels) == bool(item.targets):
        return "give either labels (classifiers) or targets (regressors), one per row of the request"
    if entry.prediction is None:
        return f"model '{entry.model}' version {entry.version} has no output to compare ground truth with"
    rows = len(entry.prediction)
    if item.labels and entry.kind != "class":
        return f"model '{entry.model}' predicts values: send targets, not labels"
    if item.targets and entry.kind != "value":
        return f"model '{entry.model}' predicts classes: send labels, not targets"
    given = len(item.labels or item.targets)
    if given != rows:
        what = "labels" if item.labels else "targets"
        return f"the request had {rows} row{'s' if rows != 1 else ''}, got {given} {what}"
    return ""


def _reduce(
    pending: list[tuple[str, float, str, str, str, dict[str, np.ndarray]]],
) -> list[tuple[str, _Entry]]:
    """In a worker thread: the prediction of each noted response (a small copy; the outputs are let go)."""
    out = []
    for rid, at, model, version, variant, outputs in pending:
        try:
            found = prediction_of(outputs)
        except (ValueError, TypeError):
            found = None
        kind, prediction = found if found is not None else ("", None)
        out.append((rid, _Entry(at, model, version, variant, kind, prediction)))
    return out
