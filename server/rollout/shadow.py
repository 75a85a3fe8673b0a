"""Shadow traffic: a share of requests is mirrored to another version after the primary has
answered, and the two outputs are compared into Prometheus metrics.

``ShadowMirror`` is a core hook: for every request answered OK whose route names a shadow version
(the ``FlagRouter`` sets it from the ``<model>.shadow`` flag), it queues a mirror.
The caller never waits: ``submit`` puts the job on a bounded queue and returns; a full queue
drops the job (counted). Workers run the shadow at the lowest batcher priority; its errors are
counted and logged at debug, never returned. Comparison (numpy) runs off the event loop.

Per (model, primary version, shadow version, output):
  rows compared, rows whose top-1 agreed (argmax of each row; for one value per row, equality),
  max |primary - shadow| and cosine similarity per request (numeric outputs).
``on_compared`` (the rollout collector) hears of each mirrored request: its rows and how many agreed on
the output that agreed least, or that the shadow failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ortserve.core import Completed, ModelVersion
from ortserve.errors import OK
from ortserve.metrics import Metrics

__all__ = ["SHADOW_PRIORITY", "Comparison", "ShadowMirror", "compare"]

log = logging.getLogger("ortserve.shadow")

# Batcher priority: 0 is the default level and runs after explicit levels 1..2**31-1, so this
# runs after every caller's request.
SHADOW_TIMEOUT_S = 5.0  # longest a mirrored request may wait for the shadow version's queue
SHADOW_PRIORITY = (1 << 31) + 1


@dataclass(slots=True)
class Comparison:
    rows: int
    top1_agree: int
    max_abs_diff: float | None  # None for non-numeric outputs
    cosine: float | None


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf"


def compare(primary: np.ndarray, shadow: np.ndarray) -> Comparison:
    """Compare one output of the primary and the shadow (same shape expected: rows are dim 0)."""
    if primary.shape != shadow.shape:
        raise ValueError(f"shape {list(shadow.shape)} differs from the primary's {list(primary.shape)}")
    rows = primary.shape[0] if primary.ndim else 1
    p, s = primary.reshape(rows, -1), shadow.reshape(rows, -1)
    if not (_numeric(p) and _numeric(s)):
        return Comparison(rows, int(np.all(p == s, axis=1).sum()), None, None)
    if p.shape[1] > 1:
        agree = int((p.argmax(axis=1) == s.argmax(axis=1)).sum())
    else:
        agree = int((p[:, 0] == s[:, 0]).sum())
    pf, sf = p.astype(np.float64).ravel(), s.astype(np.float64).ravel()
    diff = float(np.abs(pf - sf).max()) if pf.size else 0.0
    norms = float(np.linalg.norm(pf)) * float(np.linalg.norm(sf))
    if norms == 0.0:
        cosine = 1.0 if not pf.any() and not sf.any() else 0.0
    else:
        cosine = float(np.dot(pf, sf) / norms)
    return Comparison(rows, agree, diff, cosine)


@dataclass(slots=True)
class _Job:
    model: str
    primary_version: str
    shadow: ModelVersion
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]


# (model, primary version, shadow version, rows, rows agreed, the shadow failed)
OnCompared = Callable[[str, str, str, int, int, bool], None]


class ShadowMirror:
    def __init__(
        self, metrics: Metrics, queue_size: int = 256, on_compared: OnCompared | None = None
    ) -> None:
        self.metrics = metrics
        self._on_compared = on_compared
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        # Prometheus children resolved once per label set (``.labels()`` costs about 1 us each),
        # again after series were removed (a version went away: ``metrics.series.generation``)
        self._counters: dict[tuple[str, ...], Any] = {}
        self._outputs: dict[tuple[str, ...], tuple[Any, Any, Any, Any]] = {}
        self._generation = metrics.series.generation

    def _fresh(self) -> None:
        if self._generation != self.metrics.series.generation:
            self._counters.clear()
            self._outputs.clear()
            self._generation = self.metrics.series.generation

    def _outcome(self, job_or_labels: _Job | tuple[str, str, str], outcome: str) -> None:
        labels = (
            job_or_labels
            if isinstance(job_or_labels, tuple)
            else (job_or_labels.model, job_or_labels.primary_version, job_or_labels.shadow.version)
        )
        key = (*labels, outcome)
        self._fresh()
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.metrics.shadow_requests.labels(*key)
        child.inc()

    def on_complete(self, event: Completed) -> None:
        route = event.route
        if route is None or route.shadow is None or event.outcome != OK or event.response is None:
            return
        self.submit(
            event.request.model,
            route.version.version,
            route.shadow,
            cast(Mapping[str, np.ndarray], event.request.inputs),  # decoded: the request ran
            event.response.outputs,
        )

    def submit(
        self,
        model: str,
        primary_version: str,
        shadow: ModelVersion,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
    ) -> None:
        """Queue a mirror of a request the primary has answered; never blocks, never raises."""
        try:
            self._queue.put_nowait(_Job(model, primary_version, shadow, inputs, outputs))
        except asyncio.QueueFull:
            self._outcome((model, primary_version, shadow.version), "dropped")

    async def run(self) -> None:
        """One worker; start as many as the mirror may run at once."""
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            try:
                # bounded: a shadow version kept busy by its own traffic must not hold this worker forever
                deadline = time.monotonic() + SHADOW_TIMEOUT_S
                result = await job.shadow.infer(dict(job.inputs), deadline, SHADOW_PRIORITY)
                comparisons = await loop.run_in_executor(None, self._compare, job.outputs, result.outputs)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._outcome(job, "error")
                log.debug("shadow %s version %s failed: %s", job.model, job.shadow.version, e)
                if self._on_compared is not None:
                    self._on_compared(job.model, job.primary_version, job.shadow.version, 0, 0, True)
                continue
            self._record(job, comparisons)

    @staticmethod
    def _compare(
        primary: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]
    ) -> dict[str, Comparison]:
        return {name: compare(primary[name], shadow[name]) for name in primary if name in shadow}

    def _record(self, job: _Job, comparisons: dict[str, Comparison]) -> None:
        m = self.metrics
        labels = (job.model, job.primary_version, job.shadow.version)
        self._fresh()
        for name, c in comparisons.items():
            key = (*labels, name)
            children = self._outputs.get(key)
            if children is None:
                children = self._outputs[key] = (
                    m.shadow_rows.labels(*key),
                    m.shadow_top1.labels(*key),
                    m.shadow_max_abs_diff.labels(*key),
                    m.shadow_cosine.labels(*key),
                )
            rows, top1, diff, cosine = children
            rows.inc(c.rows)
            top1.inc(c.top1_agree)
            if c.max_abs_diff is not None and c.cosine is not None:
                diff.observe(c.max_abs_diff)
                cosine.observe(c.cosine)
        self._outcome(labels, "compared")
        if self._on_compared is not None and comparisons:
            least = min(comparisons.values(), key=lambda c: c.top1_agree / max(c.rows, 1))
            self._on_compared(*labels, least.rows, least.top1_agree, False)
