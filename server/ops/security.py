"""The security parts of a server, built from the settings in one place at start-up.

    check_settings(settings)                 # SettingsError: a bad combination, or an exposed port
    security = Security(settings, metrics)   # reads the certificate and auth files (fatal if bad)
    links = security.links(flags)            # [Audit, Auth] for the interceptor chain
    guard = security.metrics_guard()         # the metrics port's check, same principals (or None)
    build_server(..., credentials=security.credentials)
    await security.start(health)             # the plaintext health port
    ...
    await security.close()

Secure defaults: a gRPC port on anything but loopback needs TLS and an auth file, or ``--insecure``.
"""

from __future__ import annotations

import logging

import grpc

from ortserve.edge.auth import Auth, AuthPolicy
from ortserve.edge.authfile import AuthConfig, AuthFileError
from ortserve.edge.health import Health
from ortserve.edge.interceptors import Interceptor
from ortserve.edge.server import build_health_server
from ortserve.edge.tls import CertificateFiles
from ortserve.metrics import Metrics
from ortserve.ops.audit import AuditLog
from ortserve.ops.auditing import Audit
from ortserve.ops.guard import check_settings
from ortserve.ops.metrics_auth import GROUP, MetricsAuth
from ortserve.ops.settings import Settings, SettingsError
from ortserve.repository.signing import SignatureError, Verifier
from ortserve.rollout import FlagSource

__all__ = ["Security"]

log = logging.getLogger("ortserve")


class Security:
    """TLS files, the auth policy and the audit log of one server process."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        s = self.settings = settings
        self.metrics = metrics
        self.tls: CertificateFiles | None = None
        self.audit: AuditLog | None = None
        self.policy: AuthPolicy | None = None
        self.verifier: Verifier | None = None
        self.health_server: grpc.aio.Server | None = None
        self.health_port = 0
        check_settings(s)
        if s.tls_cert is not None and s.tls_key is not None:
            self.tls = CertificateFiles(s.tls_cert, s.tls_key, s.tls_client_ca, on_reload=self._tls_reloaded)
        if s.audit_log is not None:
            self.audit = AuditLog(s.audit_log, metrics)
        if s.trusted_key is not None:
            try:
                self.verifier = Verifier(s.trusted_key)
            except SignatureError as e:
                raise SettingsError(f"--trusted-key: {e}") from None
        if s.auth_file is not None:
            try:
                self.policy = AuthPolicy(s.auth_file, metrics, on_change=self._auth_changed)
            except AuthFileError as e:
                raise SettingsError(f"--auth-file: {e}") from None
            self._record(
                "auth-file", outcome="loaded", sha256=self.policy.config.digest, path=str(s.auth_file)
            )

    def _tls_reloaded(self, outcome: str, expiry: float) -> None:
        self.metrics.tls_reloads.labels("grpc", outcome).inc()
        self.metrics.tls_expiry.labels("grpc").set(expiry)

    def _record(self, event: str, **fields) -> None:
        if self.audit is not None:
            self.audit.record(event, **fields)

    def _auth_changed(
        self, outcome: str, old: AuthConfig | None, new: AuthConfig | None, message: str
    ) -> None:
        if new is None or old is None:
            self._record("auth-file", outcome=outcome, message=message, path=str(self.settings.auth_file))
            return
        before = {f"key:{k.name}" for k in old.file.keys} | {f"cert:{c.name}" for c in old.file.certificates}
        after = {f"key:{k.name}" for k in new.file.keys} | {f"cert:{c.name}" for c in new.file.certificates}
        self._record(
            "auth-file",
            outcome="reloaded",
            sha256_old=old.digest,
            sha256_new=new.digest,
            added=sorted(after - before),
            removed=sorted(before - after),
            path=str(self.settings.auth_file),
        )

    @property
    def credentials(self) -> grpc.ServerCredentials | None:
        return self.tls.server_credentials() if self.tls is not None else None

    def links(self, flags: FlagSource) -> list[Interceptor]:
        s = self.settings
        links: list[Interceptor] = []
        if self.audit is not None:
            links.append(Audit(self.audit, lambda: flags.flags.text))
        if self.policy is not None:
            open_groups = [
                g for g, on in (("health", s.open_health), ("reflection", s.open_reflection)) if on
            ]
            links.append(Auth(self.policy, open_groups, self.metrics))
        return links

    def metrics_guard(self) -> MetricsAuth | None:
        """The metrics port's check against the same principals (None: no auth file, or --open-metrics)."""
        if self.policy is None or self.settings.open_metrics:
            return None
        denied = self.metrics.auth_denied
        return MetricsAuth(
            self.policy, audit=self.audit, denied=lambda reason: denied.labels(GROUP, reason).inc()
        )

    async def start(self, health: Health) -> None:
        """Serve grpc.health.v1 alone, in plaintext, on ``--health-port`` (kubelet probes)."""
        s = self.settings
        if s.health_port < 0:
            return
        self.health_server, self.health_port = build_health_server(
            health, f"{s.host}:{s.health_port}", workers=s.workers
        )
        await self.health_server.start()

    def reload_auth(self) -> None:
        if self.policy is not None:
            self.policy.reload()

    async def close(self, grace: float = 0) -> None:
        if self.health_server is not None:
            await self.health_server.stop(grace)
        if self.audit is not None:
            self.audit.close()
