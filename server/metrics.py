"""Every Prometheus metric the server exports, in one place, plus the per-version counters
that the protocols' statistics RPCs read.

    ortserve_requests_total{model,version,api,code}         requests by gRPC status
    ortserve_request_duration_seconds{model,version,api}    end-to-end latency in the server
    ortserve_queue_duration_seconds{model,version}          time queued before the batch ran
    ortserve_compute_duration_seconds{model,version}        ONNX Runtime time of the request's batch
    ortserve_batch_size{model,version}                      rows per executed batch
    ortserve_queue_depth{model,version}                     requests waiting
    ortserve_model_ready{model,version}                     1 while loaded and serving
    ortserve_model_load_failures_total{model,version}       versions refused (bad file, manifest...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "VersionStats", "UNKNOWN_MODEL"]

# Requests for models that do not exist are counted under this label, so that a client
# cannot grow the label set without bound.
UNKNOWN_MODEL = "_unknown"

_LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("ortserve_requests", "Inference requests by model, version, API and gRPC status",
                                ["model", "version", "api", "code"], registry=r)
        self.request_duration = Histogram("ortserve_request_duration_seconds",
                                          "Time from request decoded to response ready, in seconds",
                                          ["model", "version", "api"], buckets=_LATENCY, registry=r)
        self.queue_duration = Histogram("ortserve_queue_duration_seconds",
                                        "Time a request waited in the batcher's queue, in seconds",
                                        ["model", "version"], buckets=_LATENCY, registry=r)
        self.compute_duration = Histogram("ortserve_compute_duration_seconds",
                                          "ONNX Runtime time of the batch a request ran in, in seconds",
                                          ["model", "version"], buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("ortserve_batch_size", "Rows in each executed batch",
                                    ["model", "version"], buckets=_BATCH, registry=r)
        self.queue_depth = Gauge("ortserve_queue_depth", "Requests waiting in the batcher's queue",
                                 ["model", "version"], registry=r)
        self.model_ready = Gauge("ortserve_model_ready", "1 while the model version is loaded and serving",
                                 ["model", "version"], registry=r)
        self.load_failures = Counter("ortserve_model_load_failures", "Model versions refused at load",
                                     ["model", "version"], registry=r)

    def version(self, model: str, version: str) -> "VersionStats":
        return VersionStats(self, model, version)


@dataclass
class VersionStats:
    """Counters for one model version; implements the batcher's BatchStats protocol.

    Prometheus children are resolved once here, not per request."""

    metrics: Metrics
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
    _children: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        m, labels = self.metrics, (self.model, self.version)
        self._batch = m.batch_size.labels(*labels)
        self._depth = m.queue_depth.labels(*labels)
        self._queue = m.queue_duration.labels(*labels)
        self._compute = m.compute_duration.labels(*labels)
        self._ready = m.model_ready.labels(*labels)

    def batch(self, rows: int, requests: int, compute_s: float) -> None:
        self._batch.observe(rows)
        self.inference_count += rows
        self.execution_count += 1
        self.last_inference_ms = int(time.time() * 1000)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def ready(self, value: bool) -> None:
        self._ready.set(1 if value else 0)

    def request(self, api: str, code: str, duration_s: float, queue_s: float | None = None,
                compute_s: float | None = None) -> None:
        key = (api, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.requests.labels(self.model, self.version, api, code),
                self.metrics.request_duration.labels(self.model, self.version, api),
            )
        children[0].inc()
        children[1].observe(duration_s)
        if code == "OK":
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
