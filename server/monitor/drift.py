"""Streaming drift: sampled requests compared with each version's reference profile.

``DriftMonitor`` is a core hook. On the event loop it keeps a share of the requests answered OK (the
``[monitoring] drift_sample_rate`` of the version that served the request, else ``sample_rate``; a random
check, then a reference to the request's inputs and outputs: no copy). A version whose rate is 0 has no
window: its profile is not read, nothing is exported, and its series go when its rate becomes 0.
Every ``interval`` seconds ``run`` hands what was kept to a worker thread, which turns each version's
samples into features (``ortserve.repository.reference``), counts them into bins with one
``np.bincount`` per version, adds the counts to the current slice of a sliding window (``window``
seconds in ``SLICES`` slices) and computes per feature PSI and binned KS D, and for the predictions PSI
and a two-sample chi-square, against the reference. The gauges carry the ``top_k`` features by PSI
(a feature that leaves the top loses its series), and a version that unloads loses all of its.

Nothing is exported for a window with fewer than ``min_rows`` sampled rows (only its row count), nor
for a version without a reference profile (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ortserve.core import Completed, ModelVersion
from ortserve.errors import OK
from ortserve.metrics import Metrics
from ortserve.repository import MANIFEST, REFERENCE, file_digest
from ortserve.repository.reference import ReferenceError, ReferenceProfile, read_reference
from ortserve.stats import chi2_critical, chi2_two_sample, ks, ks_critical, psi

__all__ = ["DriftMonitor"]

log = logging.getLogger("ortserve.drift")

SLICES = 10
MAX_PENDING = 8192  # samples kept between two ticks; more are dropped (the window stays a fair sample)


@dataclass
class _Slice:
    start: float
    features: np.ndarray
    predictions: np.ndarray | None
    rows: int = 0
    prediction_rows: int = 0


@dataclass
class _Window:
    """One version's sliding window of counts and the series it exports."""

    profile: ReferenceProfile
    labels: tuple[str, str]
    slices: deque[_Slice] = field(default_factory=deque)
    exported: set[str] = field(default_factory=set)  # features with a series now
    reported: set[str] = field(default_factory=set)  # sample problems logged once

    def _new_slice(self, now: float) -> _Slice:
        p = self.profile.prediction
        pred = None
        if p is not None:
            pred = np.zeros_like(p.counts if p.counts is not None else p.bins.counts)  # type: ignore[union-attr]
        return _Slice(now, np.zeros_like(self.profile.features.counts), pred)

    def current(self, now: float, window_s: float) -> _Slice:
        slice_s = window_s / SLICES
        while self.slices and now - self.slices[0].start >= window_s:
            self.slices.popleft()
        if not self.slices or now - self.slices[-1].start >= slice_s:
            self.slices.append(self._new_slice(now))
        return self.slices[-1]


class DriftMonitor:
    def __init__(
        self,
        metrics: Metrics,
        *,
        sample_rate: float,
        window: float = 600.0,
        min_rows: int = 200,
        top_k: int = 10,
        interval: float = 1.0,
    ) -> None:
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.window = window
        self.min_rows = min_rows
        self.top_k = top_k
        self.interval = interval
        self._pending: list[tuple[ModelVersion, Any, Any]] = []
        self._windows: dict[ModelVersion, _Window | None] = {}  # None: no usable profile
        self._random = random.random

    # -- on the event loop -----------------------------------------------------------------------
    def on_complete(self, event: Completed) -> None:
        route, response = event.route, event.response
        if route is None or response is None or event.outcome != OK:
            return
        if self._random() >= self._rate(route.version) or len(self._pending) >= MAX_PENDING:
            return
        self._pending.append((route.version, event.request.inputs, response.outputs))

    def _rate(self, mv: ModelVersion) -> float:
        """The share of a version's requests sampled: its ``[monitoring]`` rate, else the server's."""
        rate = mv.config.monitoring.drift_sample_rate
        return self.sample_rate if rate is None else rate

    async def run(self, versions: Callable[[], Sequence[ModelVersion]]) -> None:
        """Every ``interval`` seconds: follow the loaded versions, bin what was sampled, update the gauges."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick(versions())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("drift update failed")

    async def tick(self, loaded: Sequence[ModelVersion]) -> None:
        loop = asyncio.get_running_loop()
        live = {mv for mv in loaded if self._rate(mv) > 0}
        for mv in [mv for mv in self._windows if mv not in live]:
            self._forget(mv, self._windows.pop(mv))
        new = [mv for mv in loaded if mv in live and mv not in self._windows]
        if new:
            opened = await loop.run_in_executor(None, lambda: [self._open(mv) for mv in new])
            self._windows.update(zip(new, opened))
        pending, self._pending = self._pending, []
        await loop.run_in_executor(None, self._update, pending, time.monotonic())

    # -- in a worker thread ----------------------------------------------------------------------
    def _open(self, mv: ModelVersion) -> _Window | None:
        labels = (mv.model, mv.version)
        try:
            profile = self._read(mv)
        except (ReferenceError, OSError) as e:
            log.error("model %s version %s: reference profile refused, no drift metrics: %s", *labels, e)
            return None
        if profile is None:
            log.info("model %s version %s has no %s: no drift metrics for it", *labels, REFERENCE)
            return None
        if profile.accuracy is not None:
            self.metrics.reference_accuracy.labels(*labels).set(profile.accuracy)
        log.info(
            "model %s version %s: drift against %s (%d rows, %d features)",
            *labels,
            REFERENCE,
            profile.rows,
            len(profile.features.names),
        )
        return _Window(profile, labels)

    @staticmethod
    def _read(mv: ModelVersion) -> ReferenceProfile | None:
        """The profile, checked against the manifest: a manifest that does not list it makes it untrusted."""
        if not (mv.path / REFERENCE).exists():
            return None
        if mv.manifest is not None:
            entry = mv.manifest["files"].get(REFERENCE)
            if not isinstance(entry, dict):
                raise ReferenceError(f"{REFERENCE} is not listed in {MANIFEST}")
            if file_digest(mv.path / REFERENCE) != entry.get("sha256"):
                raise ReferenceError(f"{REFERENCE}: sha256 differs from {MANIFEST}")
        return read_reference(mv.path)

    def _update(self, pending: list[tuple[ModelVersion, Any, Any]], now: float) -> None:
        groups: dict[ModelVersion, list[tuple[Any, Any]]] = {}
        for mv, inputs, outputs in pending:
            groups.setdefault(mv, []).append((inputs, outputs))
        for mv, window in self._windows.items():
            if window is None:
                continue
            current = window.current(now, self.window)
            samples = groups.get(mv)
            if samples:
                self._count(window, current, samples)
            self._export(window)

    def _count(self, w: _Window, current: _Slice, samples: list[tuple[Any, Any]]) -> None:
        profile = w.profile
        try:
            x = profile.input_features(_stack([s[0] for s in samples]))
        except (ReferenceError, ValueError):  # rows of different shapes: one sample at a time
            parts = []
            for inputs, _ in samples:
                try:
                    parts.append(profile.input_features(inputs))
                except ReferenceError as e:
                    self._report(w, str(e))
            if not parts:
                return
            x = np.concatenate(parts)
        current.features += profile.features.count(x)
        current.rows += len(x)
        p = profile.prediction
        if p is None or current.predictions is None:
            return
        outputs = [s[1][p.output] for s in samples if p.output in s[1]]
        if outputs:
            try:
                y = np.concatenate(outputs)
                current.predictions += p.count(y)
                current.prediction_rows += len(y)
            except (ReferenceError, ValueError) as e:
                self._report(w, f"output '{p.output}': {e}")

    def _report(self, w: _Window, problem: str) -> None:
        if problem not in w.reported and len(w.reported) < 16:
            w.reported.add(problem)
            log.warning("model %s version %s: samples left out of drift: %s", *w.labels, problem)

    def _export(self, w: _Window) -> None:
        m, labels, profile = self.metrics, w.labels, w.profile
        rows = sum(s.rows for s in w.slices)
        m.window_rows.labels(*labels).set(rows)
        if rows < self.min_rows:
            self._clear(w)
            return
        counts = sum((s.features for s in w.slices), np.zeros_like(profile.features.counts))
        ref = profile.features.counts
        f_psi, f_ks = psi(counts, ref), ks(counts, ref)
        order = np.lexsort((-f_ks, -f_psi))[: self.top_k]
        top = {profile.features.names[i]: i for i in order}
        for name in w.exported - set(top):
            _remove(m.feature_psi, *labels, name)
            _remove(m.feature_ks, *labels, name)
        for name, i in top.items():
            m.feature_psi.labels(*labels, name).set(float(f_psi[i]))
            m.feature_ks.labels(*labels, name).set(float(f_ks[i]))
        w.exported = set(top)
        m.ks_critical.labels(*labels).set(ks_critical(rows, profile.rows, len(ref)))
        p = profile.prediction
        pred_rows = sum(s.prediction_rows for s in w.slices)
        if p is None or pred_rows < self.min_rows:
            self._clear_prediction(w)
            return
        predicted: np.ndarray = np.sum([s.predictions for s in w.slices if s.predictions is not None], axis=0)
        out = (*labels, p.output)
        if p.counts is not None:
            m.prediction_psi.labels(*out).set(float(psi(predicted, p.counts)))
            chi2, df = chi2_two_sample(predicted, p.counts)
            m.prediction_chi2.labels(*out).set(chi2)
            m.prediction_chi2_critical.labels(*out).set(chi2_critical(df))
        elif p.bins is not None:
            m.prediction_psi.labels(*out).set(float(psi(predicted, p.bins.counts).max()))

    def _clear(self, w: _Window) -> None:
        for name in w.exported:
            _remove(self.metrics.feature_psi, *w.labels, name)
            _remove(self.metrics.feature_ks, *w.labels, name)
        w.exported = set()
        _remove(self.metrics.ks_critical, *w.labels)
        self._clear_prediction(w)

    def _clear_prediction(self, w: _Window) -> None:
        p = w.profile.prediction
        if p is not None:
            for gauge in (
                self.metrics.prediction_psi,
                self.metrics.prediction_chi2,
                self.metrics.prediction_chi2_critical,
            ):
                _remove(gauge, *w.labels, p.output)

    def _forget(self, mv: ModelVersion, w: _Window | None) -> None:
        """A version that unloaded: its series go (a reload of it starts a new window)."""
        if w is None:
            return
        self._clear(w)
        _remove(self.metrics.window_rows, *w.labels)
        _remove(self.metrics.reference_accuracy, *w.labels)


def _stack(inputs: list[Any]) -> dict[str, np.ndarray]:
    if len(inputs) == 1:
        return dict(inputs[0])
    return {name: np.concatenate([i[name] for i in inputs]) for name in inputs[0]}


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # a series that was never set
        metric.remove(*labels)
