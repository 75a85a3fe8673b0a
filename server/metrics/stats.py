"""The counters of one model version, which the protocols' statistics RPCs read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ortserve.errors import OK
from ortserve.metrics.serving import ServingMetrics

__all__ = ["VersionStats"]


@dataclass
class VersionStats:
    """Counters for one model version; implements the batcher's BatchStats protocol.

    Prometheus children are resolved once here, not per request."""

    metrics: ServingMetrics
    model: str
    version: str
    success_count: int = 0
    success_s: float = 0.0
    failure_count: int = 0
    failure_s: float = 0.0
    queue_s: float = 0.0
    compute_s: float = 0.0
    inference_count: int = 0  # rows
    execution_count: int = 0  # batches
    last_inference_ms: int = 0
    # rows per batch -> [batches run, their compute seconds] (V2 ModelStatistics batch_stats)
    batch_sizes: dict[int, list] = field(default_factory=dict)
    _children: dict = field(default_factory=dict, repr=False)
    # False for the stats failed requests to unknown models/versions are counted under: they only
    # count requests, so they create no batch, queue or readiness series.
    loaded: bool = True
    _generation: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.loaded:
            return
        m, labels = self.metrics, (self.model, self.version)
        self._batch = m.batch_size.labels(*labels)
        self._depth = m.queue_depth.labels(*labels)
        self._queue = m.queue_duration.labels(*labels)
        self._compute = m.compute_duration.labels(*labels)
        self._ready = m.model_ready.labels(*labels)

    def batch(self, rows: int, requests: int, compute_s: float) -> None:
        self._batch.observe(rows)
        size = rows or requests  # a model without a batch dimension runs one inference per request
        self.inference_count += size
        self.execution_count += 1
        per_size = self.batch_sizes.get(size)
        if per_size is None:
            per_size = self.batch_sizes[size] = [0, 0.0]
        per_size[0] += 1
        per_size[1] += compute_s
        self.last_inference_ms = int(time.time() * 1000)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def ready(self, value: bool) -> None:
        self._ready.set(1 if value else 0)

    def request(
        self,
        api: str,
        outcome: str,
        duration_s: float,
        queue_s: float | None = None,
        compute_s: float | None = None,
        variant: str = "",
    ) -> None:
        key = (api, outcome, variant)
        series = self.metrics.series
        if self._generation != series.generation:  # some series were removed: resolve them again
            self._children.clear()
            self._generation = series.generation
        children = self._children.get(key)
        if children is None:
            series.saw_variant(self.model, variant)
            children = self._children[key] = (
                self.metrics.requests.labels(self.model, self.version, variant, api, outcome),
                self.metrics.request_duration.labels(self.model, self.version, variant, api),
            )
        children[0].inc()
        children[1].observe(duration_s)
        if outcome == OK:
            self.success_count += 1
            self.success_s += duration_s
        else:
            self.failure_count += 1
            self.failure_s += duration_s
        if queue_s is not None:
            self._queue.observe(queue_s)
            self.queue_s += queue_s
        if compute_s is not None:
            self._compute.observe(compute_s)
            self.compute_s += compute_s
