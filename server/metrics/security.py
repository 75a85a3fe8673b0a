"""Authentication, TLS, audit and signature metrics, a part of :class:`ortserve.metrics.Metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["SecurityMetrics", "auth_denied_counter"]


def auth_denied_counter(r: CollectorRegistry) -> Counter:
    """The denials counter alone: the ``--workers`` supervisor counts its metrics port's denials in it
    (multiprocess mode: its values join the workers' in the one scrape)."""
    return Counter(
        "ortserve_auth_denied",
        "Calls refused by authentication or authorization, by RPC group (metrics: HTTP requests to "
        "the metrics port) and reason",
        ["group", "reason"],
        registry=r,
    )


class SecurityMetrics:
    def _security(self, r: CollectorRegistry) -> None:
        self.auth_denied = auth_denied_counter(r)
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
