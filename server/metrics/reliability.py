"""Admission control, flag evaluation failures and files changed under loaded versions, a part of
:class:`ortserve.metrics.Metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ReliabilityMetrics"]


class ReliabilityMetrics:
    def _reliability(self, r: CollectorRegistry) -> None:
        self.admission_rejected = Counter(
            "ortserve_admission_rejected",
            "Requests refused at once by admission control (RESOURCE_EXHAUSTED), by reason (bytes, rpcs)",
            ["reason"],
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "ortserve_inflight_request_bytes",
            "Bytes held by the inference requests in flight (inputs, decoded)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.flags_evaluation_errors = Counter(
            "ortserve_flags_evaluation_errors",
            "Flag evaluations whose targeting failed; the flag's default variant served the request",
            ["flag"],
            registry=r,
        )
        self.model_files_changed = Counter(
            "ortserve_model_files_changed",
            "Loaded versions whose files changed on disk (loaded again: served on or unloaded)",
            ["model", "version"],
            registry=r,
        )
