"""Every Prometheus metric the server exports, in one place, plus the per-version counters
that the protocols' statistics RPCs read.

    ortserve_requests_total{model,version,variant,api,outcome}  inference requests by outcome (ok,
                                                            invalid_input, not_found, queue_full, deadline_exceeded,
                                                            unavailable, failed, internal, cancelled: see
                                                            ortserve.errors); variant: the flag variant that
                                                            routed it, "" when none did
    ortserve_request_duration_seconds{model,version,variant,api}  end-to-end latency in the server
    ortserve_queue_duration_seconds{model,version}          time queued before the batch ran
    ortserve_compute_duration_seconds{model,version}        ONNX Runtime time of the request's batch
    ortserve_batch_size{model,version}                      rows per executed batch
    ortserve_queue_depth{model,version}                     requests waiting
    ortserve_model_ready{model,version}                     1 while loaded and serving
    ortserve_model_load_failures_total{model,version}       versions refused (bad file, manifest...)
    ortserve_flags_loads_total{source}                      flag documents accepted (file, admin)
    ortserve_flags_rejected_total{reason}                   flag documents refused (json, schema, operator,
                                                            weights, version, io): the last good ones stay
    ortserve_shadow_requests_total{model,primary_version,shadow_version,outcome}
                                                            mirrored requests: compared, error, dropped
    ortserve_shadow_rows_total{model,primary_version,shadow_version,output}       rows compared
    ortserve_shadow_top1_agreements_total{...same}          rows whose top-1 (argmax) agreed
    ortserve_shadow_max_abs_diff{...same}                   per request: max |primary - shadow|
    ortserve_shadow_cosine_similarity{...same}              per request: cosine(primary, shadow)
    ortserve_auth_denied_total{group,reason}                calls refused: unauthenticated, permission_denied
    ortserve_auth_file_reloads_total{outcome}               auth file loads: ok, refused (the last good stays)
    ortserve_tls_certificate_reloads_total{endpoint,outcome}  certificate files read: ok, refused
    ortserve_tls_certificate_expiry_timestamp_seconds{endpoint}  notAfter of the certificate serving
    ortserve_audit_records_total / ortserve_audit_dropped_total  audit lines written / lost to a full queue
    ortserve_model_signature_failures_total{model,version,reason}  versions refused by signature checks:
                                                            unsigned, tampered, untrusted, unreadable
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ortserve.errors import OK

__all__ = ["UNKNOWN_MODEL", "Metrics", "VersionStats"]

# Requests for models that do not exist are counted under this label, so that a client
# cannot grow the label set without bound.
UNKNOWN_MODEL = "_unknown"

_LATENCY = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_DIFF = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)
# The first bound is 0, not negative, so that _sum (mean = _sum / _count) is exported; le="0" counts
# the shadows pointing away from the primary.
_COSINE = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ortserve_requests",
            "Inference requests by model, version, flag variant, API and outcome",
            ["model", "version", "variant", "api", "outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "ortserve_request_duration_seconds",
            "Time from request decoded to response ready, in seconds",
            ["model", "version", "variant", "api"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_duration = Histogram(
            "ortserve_queue_duration_seconds",
            "Time a request waited in the batcher's queue, in seconds",
            ["model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        self.compute_duration = Histogram(
            "ortserve_compute_duration_seconds",
            "ONNX Runtime time of the batch a request ran in, in seconds",
            ["model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "ortserve_batch_size",
            "Rows in each executed batch",
            ["model", "version"],
            buckets=_BATCH,
            registry=r,
        )
        self.queue_depth = Gauge(
            "ortserve_queue_depth",
            "Requests waiting in the batcher's queue",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_ready = Gauge(
            "ortserve_model_ready",
            "1 while the model version is loaded and serving",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.load_failures = Counter(
            "ortserve_model_load_failures", "Model versions refused at load", ["model", "version"], registry=r
        )
        self.flags_loads = Counter(
            "ortserve_flags_loads", "Flag documents accepted, by source (file, admin)", ["source"], registry=r
        )
        self.flags_rejected = Counter(
            "ortserve_flags_rejected",
            "Flag documents refused (the last good flags keep routing), by reason",
            ["reason"],
            registry=r,
        )
        pair = ["model", "primary_version", "shadow_version"]
        self.shadow_requests = Counter(
            "ortserve_shadow_requests",
            "Requests mirrored to a shadow version, by outcome (compared, error, dropped)",
            [*pair, "outcome"],
            registry=r,
        )
        self.shadow_rows = Counter(
            "ortserve_shadow_rows",
            "Output rows compared between primary and shadow",
            [*pair, "output"],
            registry=r,
        )
        self.shadow_top1 = Counter(
            "ortserve_shadow_top1_agreements",
            "Compared rows whose top-1 (argmax; the value for one-value rows) agreed",
            [*pair, "output"],
            registry=r,
        )
        self.shadow_max_abs_diff = Histogram(
            "ortserve_shadow_max_abs_diff",
            "Largest absolute difference between primary and shadow outputs, per request",
            [*pair, "output"],
            buckets=_DIFF,
            registry=r,
        )
        self.shadow_cosine = Histogram(
            "ortserve_shadow_cosine_similarity",
            "Cosine similarity of primary and shadow outputs, per request",
            [*pair, "output"],
            buckets=_COSINE,
            registry=r,
        )

        self._security(r)

    def _security(self, r: CollectorRegistry) -> None:
        self.auth_denied = Counter(
            "ortserve_auth_denied",
            "Calls refused by authentication or authorization, by RPC group and reason",
            ["group", "reason"],
            registry=r,
        )
        self.auth_reloads = Counter(
            "ortserve_auth_file_reloads",
            "Auth file loads, by outcome (ok, refused: the last good one stays in force)",
            ["outcome"],
            registry=r,
        )
        self.tls_reloads = Counter(
            "ortserve_tls_certificate_reloads",
            "TLS certificate files read, by endpoint (grpc, metrics) and outcome (ok, refused)",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.tls_expiry = Gauge(
            "ortserve_tls_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter, Unix time) of the TLS certificate serving, by endpoint",
            ["endpoint"],
            registry=r,
            multiprocess_mode="min",
        )
        self.audit_records = Counter("ortserve_audit_records", "Audit log lines written", registry=r)
        self.audit_dropped = Counter(
            "ortserve_audit_dropped", "Audit records lost because the writer's queue was full", registry=r
        )
        self.signature_failures = Counter(
            "ortserve_model_signature_failures",
            "Model versions refused by signature verification, by reason",
            ["model", "version", "reason"],
            registry=r,
        )

    def version(self, model: str, version: str, loaded: bool = True) -> VersionStats:
        return VersionStats(self, model, version, loaded=loaded)


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
    # rows per batch -> [batches run, their compute seconds] (V2 ModelStatistics batch_stats)
    batch_sizes: dict[int, list] = field(default_factory=dict)
    _children: dict = field(default_factory=dict, repr=False)
    # False for the stats failed requests to unknown models/versions are counted under: they only
    # count requests, so they create no batch, queue or readiness series.
    loaded: bool = True

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
        children = self._children.get(key)
        if children is None:
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
