"""The request path's metrics (requests, latency, batching, readiness, flags, shadow traffic), a part of
:class:`ortserve.metrics.Metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ortserve.metrics.buckets import BATCH, COSINE, DIFF, LATENCY
from ortserve.series import Series

__all__ = ["ServingMetrics"]


class ServingMetrics:
    series: Series  # made by Metrics: VersionStats re-resolves its children after removals

    def _serving(self, r: CollectorRegistry) -> None:
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
            buckets=LATENCY,
            registry=r,
        )
        self.queue_duration = Histogram(
            "ortserve_queue_duration_seconds",
            "Time a request waited in the batcher's queue, in seconds",
            ["model", "version"],
            buckets=LATENCY,
            registry=r,
        )
        self.compute_duration = Histogram(
            "ortserve_compute_duration_seconds",
            "ONNX Runtime time of the batch a request ran in, in seconds",
            ["model", "version"],
            buckets=LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "ortserve_batch_size",
            "Rows in each executed batch",
            ["model", "version"],
            buckets=BATCH,
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
            buckets=DIFF,
            registry=r,
        )
        self.shadow_cosine = Histogram(
            "ortserve_shadow_cosine_similarity",
            "Cosine similarity of primary and shadow outputs, per request",
            [*pair, "output"],
            buckets=COSINE,
            registry=r,
        )
