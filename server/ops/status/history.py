"""A short history of request rate, p99 latency and error ratio per (model, version, variant), for the status
page's charts: a ring buffer of samples of the Prometheus registry, taken off the event loop (in the status
page's own thread) every few seconds. Nothing on the request path changes: the page reads the same counters and
histograms a Prometheus scrape reads.

    history = MetricsHistory(registry, interval=5, window=600)
    history.sample()                       # every interval, from the sampling thread
    history.series()                       # {("digits", "2", "int8"): Series(points, last_minute)}

p99 is estimated from the histogram buckets' increase between two samples, interpolated within a bucket as
Prometheus' ``histogram_quantile`` does. Drift is the drift monitor's latest PSI gauges per version. An error is any outcome but ``ok`` and ``cancelled`` (a caller that gave
up is not the server's error).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry

from ortserve.errors import CANCELLED, OK

__all__ = ["MetricsHistory", "Point", "Series", "Shadow", "quantile"]

REQUESTS = "ortserve_requests"  # family names as collect() gives them (a counter's without _total)
DURATION = "ortserve_request_duration_seconds"
LAST = 60.0  # seconds summarised in the table's columns
_NOT_ERRORS = (OK, CANCELLED)
# The drift monitor's gauges (ortserve.monitor): the page shows each version's largest value of each.
DRIFT = ("ortserve_feature_drift_psi", "ortserve_prediction_drift_psi")
# Admission and reliability figures (family as collect() names it -> the label it is shown by): the page's
# "Admission and reliability" table; the worker families exist in the --workers supervisor's registry only.
LEVELS = {
    "ortserve_inflight_request_bytes": "",
    "ortserve_admission_rejected": "reason",
    "ortserve_flags_evaluation_errors": "",
    "ortserve_model_files_changed": "model",
    "ortserve_workers": "state",
    "ortserve_worker_restarts": "",
}
SAMPLED = (
    "ortserve_requests_total",
    "ortserve_request_duration_seconds_bucket",
    "ortserve_shadow_requests_total",
    "ortserve_shadow_rows_total",
    "ortserve_shadow_top1_agreements_total",
    "ortserve_shadow_cosine_similarity_sum",
    "ortserve_shadow_cosine_similarity_count",
    *DRIFT,
    "ortserve_inflight_request_bytes",
    "ortserve_admission_rejected_total",
    "ortserve_flags_evaluation_errors_total",
    "ortserve_model_files_changed_total",
)
Level = tuple[str, str]  # (family, label value): "model" is shown as "<model> v<version>"

Key = tuple[str, str, str]  # (model, version, variant)


class Point(NamedTuple):  # a tuple: tens of thousands are kept, made once each, at sample time
    t: float  # when the step ended, on the history's clock (``Series.now - t``: seconds before now)
    rate: float  # requests per second
    error_ratio: float | None  # None: no request in the step
    p99_s: float | None
    requests: float = 0.0  # in the step


@dataclass(frozen=True)
class Series:
    points: tuple[Point, ...]  # oldest first, within the window
    last: Point  # over the last minute (or what the history holds of it)
    requests: float  # in the whole window
    now: float  # the latest sample's time


@dataclass(frozen=True)
class Shadow:
    """Mirrored traffic from a primary version to a shadow version over the history held."""

    mirrored: float  # requests compared
    failed: float  # shadow runs that failed
    dropped: float  # not mirrored: the mirror queue was full
    agreement: float | None  # top-1 agreement over the compared rows
    cosine: float | None  # mean cosine between primary and shadow outputs


@dataclass
class _Sample:
    t: float
    counts: dict[Key, list[float]]  # [requests, errors]
    buckets: dict[Key, dict[float, float]]  # upper bound -> cumulative count (summed over APIs)
    shadow: dict[Key, dict[str, float]]  # (model, primary, shadow) -> counter -> value
    levels: dict[Level, float]  # LEVELS' values, summed by their label


_SHADOW = {  # family -> (sample suffix, field; outcome label picks the field for requests)
    "ortserve_shadow_rows": ("_total", "rows"),
    "ortserve_shadow_top1_agreements": ("_total", "agree"),
    "ortserve_shadow_cosine_similarity": ("_sum", "cos_sum"),
}


def _key(labels: dict[str, str]) -> Key:
    return labels.get("model", ""), labels.get("version", ""), labels.get("variant", "")


def _shadow_sample(family: Any, out: dict[Key, dict[str, float]]) -> None:
    for s in family.samples:
        key = (
            s.labels.get("model", ""),
            s.labels.get("primary_version", ""),
            s.labels.get("shadow_version", ""),
        )
        if family.name == "ortserve_shadow_requests":
            if not s.name.endswith("_total"):
                continue
            field = s.labels.get("outcome", "")
        elif s.name.endswith("_count") and family.name == "ortserve_shadow_cosine_similarity":
            field = "cos_count"
        else:
            suffix, field = _SHADOW[family.name]
            if not s.name.endswith(suffix):
                continue
        per = out.setdefault(key, {})
        per[field] = per.get(field, 0.0) + s.value


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile from cumulative bucket counts ({upper bound: count}, +Inf included), interpolated
    linearly inside the bucket it falls in; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):  # above the highest bound: that bound is all one can say
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _step(old: _Sample, new: _Sample, key: Key) -> tuple[float, float, dict[float, float]] | None:
    """(requests, errors, bucket increases) of ``key`` between two samples; None after a reset."""
    n0, e0 = old.counts.get(key, (0.0, 0.0))
    n1, e1 = new.counts.get(key, (0.0, 0.0))
    if n1 < n0 or e1 < e0:
        return None
    b0, b1 = old.buckets.get(key, {}), new.buckets.get(key, {})
    return n1 - n0, e1 - e0, {b: c - b0.get(b, 0.0) for b, c in b1.items()}


def _point(t: float, dt: float, step: tuple[float, float, dict[float, float]]) -> Point:
    n, errors, buckets = step
    return Point(
        t, n / dt if dt > 0 else 0.0, errors / n if n else None, quantile(0.99, buckets) if n else None, n
    )


class MetricsHistory:
    """Each sample adds one point per series (computed here, in the sampling thread); a page request only
    ages the points and sums up the last minute. Raw samples are kept for the last minute only (and the
    small shadow counters for the whole window), so memory grows with series x window / interval points."""

    def __init__(
        self,
        registry: CollectorRegistry,
        interval: float = 5.0,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        restrict: bool = True,
    ) -> None:
        self.registry = registry
        # Only the samples the page reads are collected, not every histogram. A registry whose collectors
        # declare no names (the supervisor's MultiProcessCollector) is collected whole.
        self._source: Any = registry.restricted_registry(SAMPLED) if restrict else registry
        self.interval = interval
        self.window = window
        self._clock = clock
        self._keep = max(2, math.ceil(window / interval) + 1)
        self._recent: deque[_Sample] = deque(maxlen=min(self._keep, math.ceil(LAST / interval) + 2))
        self._shadows: deque[tuple[float, dict[Key, dict[str, float]]]] = deque(maxlen=self._keep)
        self._points: dict[Key, deque[Point]] = {}
        self._lock = threading.Lock()
        self.samples = 0  # taken so far: what a cached rendering is keyed on
        # (model, version) -> {gauge: its largest value now}: drift as the monitor last exported it
        self.drift: dict[tuple[str, str], dict[str, float]] = {}

    def sample(self) -> None:
        counts: dict[Key, list[float]] = {}
        buckets: dict[Key, dict[float, float]] = {}
        shadow: dict[Key, dict[str, float]] = {}
        drift: dict[tuple[str, str], dict[str, float]] = {}
        levels: dict[Level, float] = {}
        for family in self._source.collect():
            if family.name in LEVELS:
                by = LEVELS[family.name]
                for s in family.samples:
                    if s.name.endswith(("_created", "_gcount", "_gsum")):
                        continue
                    label = s.labels.get(by, "")
                    if by == "model":
                        label = f"{label} v{s.labels.get('version', '')}"
                    levels[(family.name, label)] = levels.get((family.name, label), 0.0) + s.value
            elif family.name == REQUESTS:
                for s in family.samples:
                    if s.name.endswith("_total"):
                        c = counts.setdefault(_key(s.labels), [0.0, 0.0])
                        c[0] += s.value
                        if s.labels.get("outcome") not in _NOT_ERRORS:
                            c[1] += s.value
            elif family.name == DURATION:
                for s in family.samples:
                    if s.name.endswith("_bucket"):
                        per = buckets.setdefault(_key(s.labels), {})
                        bound = float(s.labels["le"])
                        per[bound] = per.get(bound, 0.0) + s.value
            elif family.name == "ortserve_shadow_requests" or family.name in _SHADOW:
                _shadow_sample(family, shadow)
            elif family.name in DRIFT:
                for sample in family.samples:
                    key2 = (sample.labels.get("model", ""), sample.labels.get("version", ""))
                    gauges = drift.setdefault(key2, {})
                    gauges[family.name] = max(gauges.get(family.name, 0.0), sample.value)
        new = _Sample(self._clock(), counts, buckets, shadow, levels)
        with self._lock:
            old = self._recent[-1] if self._recent else None
            if old is not None:
                for key in counts:
                    step = _step(old, new, key)
                    if step is not None:
                        points = self._points.get(key)
                        if points is None:
                            points = self._points[key] = deque(maxlen=self._keep - 1)
                        points.append(_point(new.t, new.t - old.t, step))
                for key in [k for k, v in self._points.items() if v and new.t - v[-1].t > self.window]:
                    del self._points[key]  # a series that stopped (a version unloaded) ages out whole
            self._recent.append(new)
            self._shadows.append((new.t, shadow))
            self.drift = drift
            self.samples += 1

    def series(self) -> dict[Key, Series]:
        with self._lock:
            if len(self._recent) < 2:
                return {}
            recent = list(self._recent)
            points = {k: list(v) for k, v in self._points.items()}
        now = recent[-1].t
        older = [s for s in recent[:-1] if now - s.t >= LAST]
        base = older[-1] if older else recent[0]  # the sample a minute ago, or the oldest there is
        out = {}
        since = now - self.window
        for key in sorted(points):
            held = tuple(p for p in points[key] if p.t >= since)
            if not held:
                continue
            last = _step(base, recent[-1], key) if key in recent[-1].counts else None
            out[key] = Series(
                held,
                _point(now, now - base.t, last) if last else Point(now, 0.0, None, None),
                sum(p.requests for p in held),
                now,
            )
        return out

    def levels(self) -> tuple[dict[Level, float], dict[Level, float]]:
        """The admission and reliability figures (``LEVELS``): their latest values, and each one's increase
        over the last minute (for the counters; what the history holds of it; 0 after a reset)."""
        with self._lock:
            if not self._recent:
                return {}, {}
            recent = list(self._recent)
        now = recent[-1]
        older = [s for s in recent[:-1] if now.t - s.t >= LAST]
        base = older[-1] if older else recent[0]
        return dict(now.levels), {k: max(0.0, v - base.levels.get(k, 0.0)) for k, v in now.levels.items()}

    def shadow(self) -> dict[Key, Shadow]:
        """(model, primary version, shadow version) -> what was mirrored over the history held."""
        with self._lock:
            if len(self._shadows) < 2:
                return {}
            (_, first), (_, last) = self._shadows[0], self._shadows[-1]
        out = {}
        for key, now in sorted(last.items()):
            before = first.get(key, {})
            d = {k: v - before.get(k, 0.0) for k, v in now.items()}
            if any(v < 0 for v in d.values()):
                continue  # a reset in between
            rows, compared = d.get("rows", 0.0), d.get("compared", 0.0)
            out[key] = Shadow(
                compared,
                d.get("error", 0.0),
                d.get("dropped", 0.0),
                d.get("agree", 0.0) / rows if rows else None,
                d.get("cos_sum", 0.0) / d["cos_count"] if d.get("cos_count") else None,
            )
        return out
