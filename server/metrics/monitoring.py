"""Drift, feedback and payload-log metrics (``ortserve.monitor``), a part of :class:`ortserve.metrics.Metrics`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from ortserve.metrics.buckets import ERROR, MV, MVV

__all__ = ["MonitoringMetrics"]


class MonitoringMetrics:
    def _monitoring(self, r: CollectorRegistry) -> None:
        """Drift, feedback and payload-log metrics (``ortserve.monitor``). Under ``--workers`` each worker
        measures drift on its own share of traffic; the endpoint shows the largest value."""

        def gauge(name: str, doc: str, labels: tuple[str, ...] = (), mode: Any = "livemax") -> Gauge:
            return Gauge(name, doc, labels, registry=r, multiprocess_mode=mode)

        self.feature_psi = gauge(
            "ortserve_feature_drift_psi", "PSI of a feature, window vs reference", (*MV, "feature")
        )
        self.feature_ks = gauge(
            "ortserve_feature_drift_ks", "Binned KS D of a feature, window vs reference", (*MV, "feature")
        )
        self.ks_critical = gauge("ortserve_drift_ks_critical", "KS D critical value (5%, Bonferroni)", MV)
        self.prediction_psi = gauge(
            "ortserve_prediction_drift_psi", "PSI of the predictions", (*MV, "output")
        )
        self.prediction_chi2 = gauge(
            "ortserve_prediction_drift_chi2", "Chi-square of the predicted classes", (*MV, "output")
        )
        self.prediction_chi2_critical = gauge(
            "ortserve_prediction_drift_chi2_critical", "Chi-square critical value (5%)", (*MV, "output")
        )
        self.window_rows = gauge(
            "ortserve_drift_window_rows", "Sampled rows in the drift window", MV, "livesum"
        )
        self.reference_accuracy = gauge("ortserve_reference_accuracy", "Accuracy on the reference data", MV)
        self.feedback = Counter(
            "ortserve_feedback",
            "Rows with ground truth, by outcome (correct, incorrect, scored)",
            (*MVV, "outcome"),
            registry=r,
        )
        self.feedback_unmatched = Counter(
            "ortserve_feedback_unmatched",
            "Feedback items not joined (unknown, duplicate, invalid)",
            ["reason"],
            registry=r,
        )
        self.feedback_error = Histogram(
            "ortserve_feedback_abs_error",
            "Absolute error of regression rows",
            MVV,
            buckets=ERROR,
            registry=r,
        )
        self.feedback_reward = Summary(
            "ortserve_feedback_reward", "Rewards given with feedback", MVV, registry=r
        )
        self.feedback_entries = gauge(
            "ortserve_feedback_index_entries", "Predictions awaiting ground truth", mode="livesum"
        )
        self.payload_records = Counter(
            "ortserve_payload_records", "Payload log records written", ["model"], registry=r
        )
        self.payload_dropped = Counter(
            "ortserve_payload_dropped",
            "Payload log records dropped (queue_full, io_error)",
            ["reason"],
            registry=r,
        )
        self.payload_bytes = gauge("ortserve_payload_bytes", "Payload log bytes on disk", mode="livesum")
