"""Rollout controller metrics, a part of :class:`ortserve.metrics.Metrics`. Only the leader (the server, or
worker 0 under ``--workers``) sets them; labels are bounded by the models and the five states."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["RolloutMetrics"]


class RolloutMetrics:
    def _rollout(self, r: CollectorRegistry) -> None:
        # livemax: a restarted leader's old values go with its process; the followers never set these
        self.rollout_state = Gauge(
            "ortserve_rollout_state",
            "1 for the state the model's rollout is in (progressing, waiting-for-data, promoted, "
            "rolled-back, aborted), 0 for the others",
            ["model", "state"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rollout_weight = Gauge(
            "ortserve_rollout_weight",
            "Percent of the model's traffic the rollout sends to its candidate",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rollout_needed = Gauge(
            "ortserve_rollout_requests_needed",
            "Candidate requests the current step still needs (0 unless waiting-for-data)",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rollout_e_value = Gauge(
            "ortserve_rollout_e_value",
            "The judge's evidence that the candidate is worse, per check (errors, latency, accuracy, "
            "shadow) and combined (check=all); the rollout is rolled back when all reaches 1/alpha",
            ["model", "check"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rollout_transitions = Counter(
            "ortserve_rollout_transitions",
            "Rollout transitions, by the state entered (a step forward counts as progressing)",
            ["model", "state"],
            registry=r,
        )
