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
                                                            weights, version, size, depth, io): the last good ones stay
    ortserve_flags_evaluation_errors_total{flag}            targeting that failed: the flag's default variant served
    ortserve_shadow_requests_total{model,primary_version,shadow_version,outcome}
                                                            mirrored requests: compared, error, dropped
    ortserve_shadow_rows_total{model,primary_version,shadow_version,output}       rows compared
    ortserve_shadow_top1_agreements_total{...same}          rows whose top-1 (argmax) agreed
    ortserve_shadow_max_abs_diff{...same}                   per request: max |primary - shadow|
    ortserve_shadow_cosine_similarity{...same}              per request: cosine(primary, shadow)
  monitoring (ortserve.monitor; see the README "Monitoring"):
    ortserve_feature_drift_psi{model,version,feature}       PSI of the window vs the reference, top-k features
    ortserve_feature_drift_ks{model,version,feature}        binned Kolmogorov-Smirnov D, same features
    ortserve_drift_ks_critical{model,version}               D's critical value (5%, Bonferroni over features)
    ortserve_prediction_drift_psi{model,version,output}     PSI of the predictions (classes, or the largest
                                                            over an output's binned features)
    ortserve_prediction_drift_chi2{model,version,output}    two-sample chi-square of the predicted classes
    ortserve_prediction_drift_chi2_critical{...same}        its critical value (5%)
    ortserve_drift_window_rows{model,version}               sampled rows in the sliding window
    ortserve_reference_accuracy{model,version}              accuracy on the reference data (with labels)
    ortserve_feedback_total{model,version,variant,outcome}  rows with ground truth: correct, incorrect, scored
    ortserve_feedback_unmatched_total{reason}               feedback items not joined: unknown, duplicate, invalid
    ortserve_feedback_abs_error{model,version,variant}      |target - prediction| per regression row
    ortserve_feedback_reward{model,version,variant}         rewards given with feedback (count and sum)
    ortserve_feedback_index_entries                         predictions waiting for their ground truth
    ortserve_payload_records_total{model}                   payload log records written
    ortserve_payload_dropped_total{reason}                  records not written: queue_full, io_error
    ortserve_payload_bytes                                  payload log bytes on disk
    ortserve_auth_denied_total{group,reason}                calls refused: unauthenticated, permission_denied
    ortserve_auth_file_reloads_total{outcome}               auth file loads: ok, refused (the last good stays)
    ortserve_tls_certificate_reloads_total{endpoint,outcome}  certificate files read: ok, refused
    ortserve_tls_certificate_expiry_timestamp_seconds{endpoint}  notAfter of the certificate serving
    ortserve_audit_records_total / ortserve_audit_dropped_total  audit lines written / lost to a full queue
    ortserve_model_signature_failures_total{model,version,reason}  versions refused by signature checks:
                                                            unsigned, tampered, untrusted, unreadable
  reliability (README "Drain, admission and memory"):
    ortserve_admission_rejected_total{reason}               requests refused at once: bytes (in-flight request bytes
                                                            over the bound), rpcs (concurrent RPCs over the bound)
    ortserve_inflight_request_bytes                         bytes the requests in flight hold (decoded inputs)
    ortserve_model_files_changed_total{model,version}       loaded versions whose files changed on disk

  rollouts (ortserve.rollout; set by the leader only, see the README "Automated rollouts"):
    ortserve_rollout_state{model,state}                     1 for the rollout's state, 0 for the other four
    ortserve_rollout_weight{model}                          candidate's percent of the traffic
    ortserve_rollout_requests_needed{model}                 candidate requests the step still needs
    ortserve_rollout_e_value{model,check}                   the judge's evidence per check and combined (all)
    ortserve_rollout_transitions_total{model,state}         transitions, by the state entered

Series follow what is loaded (``ortserve.series``): those of versions, models and flag variants that
go away are removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["UNKNOWN_MODEL", "MetricInfo", "Metrics", "VersionStats", "catalogue"]

from ortserve.metrics.monitoring import MonitoringMetrics
from ortserve.metrics.reliability import ReliabilityMetrics
from ortserve.metrics.rollout import RolloutMetrics
from ortserve.metrics.security import SecurityMetrics
from ortserve.metrics.serving import ServingMetrics
from ortserve.metrics.stats import VersionStats
from ortserve.series import Series

# Requests for models that do not exist are counted under this label, so that a client
# cannot grow the label set without bound.
UNKNOWN_MODEL = "_unknown"


class Metrics(ServingMetrics, MonitoringMetrics, SecurityMetrics, ReliabilityMetrics, RolloutMetrics):
    """Every metric, registered in one registry (a new one per server, so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.series = Series(self)  # what is live; the series of what goes away are removed
        self._serving(self.registry)
        self._monitoring(self.registry)
        self._security(self.registry)
        self._reliability(self.registry)
        self._rollout(self.registry)

    def version(self, model: str, version: str, loaded: bool = True) -> VersionStats:
        return VersionStats(self, model, version, loaded=loaded)


@dataclass(frozen=True)
class MetricInfo:
    """One metric as a scrape shows it (counters with their ``_total``), for docs and tools."""

    name: str
    kind: str  # counter, gauge or histogram
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()  # histograms' upper bounds (+Inf left out)


def catalogue(metrics: Metrics | None = None) -> list[MetricInfo]:
    """Every metric :class:`Metrics` defines, in the order it defines them (the documentation's metrics
    reference is generated from this list, so a new metric is documented by its help text)."""
    m = metrics if metrics is not None else Metrics()
    out = []
    for value in vars(m).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        (family,) = value.describe()
        name = family.name + ("_total" if family.type == "counter" else "")
        bounds = tuple(b for b in getattr(value, "_upper_bounds", ()) if b != float("inf"))
        labels = tuple(getattr(value, "_labelnames", ()))
        out.append(MetricInfo(name, family.type, labels, family.documentation, bounds))
    return out
