"""Who may read the metrics port. With ``--auth-file`` (and without ``--open-metrics``) every HTTP
request to it (``/metrics``, the status page, anything else) needs a principal of the auth file whose
roles grant the ``metrics`` group: the same principals the gRPC port takes, from

- ``Authorization: Bearer <API key or JWT>`` or ``X-API-Key: <key>`` (Prometheus sends the first with
  a scrape's ``authorization`` setting);
- ``Authorization: Basic`` with the key (or JWT) as the password, whatever the user name: a browser
  asks for them after a 401, which offers Basic next to Bearer, so the status page opens in one;
- with ``--metrics-tls`` and ``--tls-client-ca``, the client certificate the handshake verified,
  matched against ``[[certificates]]`` (when no header names a principal).

No or bad credentials: 401 with ``WWW-Authenticate``; a principal whose roles do not grant ``metrics``
on every model (the port shows every model): 403. The body says what is missing and never echoes a
credential. Each denial is counted in ``ortserve_auth_denied_total{group="metrics"}`` and written to
the audit log (``event: http``) as a denied RPC is.

This runs in the HTTP server's threads, never on the event loop: it takes ``policy.authenticator``
once per request (``ortserve.edge.policy`` publishes a reloaded auth file in one assignment).

    guard = MetricsAuth(policy, audit=audit_log, denied=lambda reason: ...)
    start_metrics_server(..., guard=guard)
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ortserve.edge.authfile import ALL, AuthFileError
from ortserve.edge.policy import AuthPolicy
from ortserve.edge.principals import Authenticator, Principal
from ortserve.errors import PermissionDenied, ServeError, Unauthenticated
from ortserve.ops.audit import AuditLog
from ortserve.ops.settings import Settings, SettingsError
from ortserve.ops.status import WSGIApp

__all__ = ["GROUP", "MetricsAuth", "certificate_context", "supervisor_guard"]

GROUP = "metrics"
_REALM = 'realm="ortserve"'
_NO_CREDENTIALS = (
    "no credentials: send 'Authorization: Bearer <API key or JWT>' or 'X-API-Key: <key>' "
    "(or Basic with the key as the password)"
)
_BAD_HEADER = "Authorization header: expected 'Bearer <API key or JWT>' or 'Basic <base64 of user:key>'"


def certificate_context(der: bytes) -> dict[str, list[bytes]]:
    """A verified client certificate (DER) as gRPC's auth context names it: ``x509_subject`` (RFC
    4514: ``CN=ingest,O=Acme``), ``x509_common_name`` and ``x509_subject_alternative_name`` (DNS
    names, URIs, emails, IP addresses), so that ``Authenticator.from_certificate`` matches it the same."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    subject = cert.subject.rfc4514_string({NameOID.EMAIL_ADDRESS: "emailAddress"})
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        sans: Iterable[x509.GeneralName] = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        sans = ()
    alternative = [
        str(n.value)
        for n in sans
        if isinstance(n, x509.DNSName | x509.UniformResourceIdentifier | x509.RFC822Name | x509.IPAddress)
    ]
    return {
        "x509_subject": [subject.encode()],
        "x509_common_name": [str(n.value).encode() for n in names],
        "x509_subject_alternative_name": [v.encode() for v in alternative],
    }


def _basic_password(encoded: str) -> str:
    try:
        text = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("Authorization: Basic credentials are not base64 of 'user:key'") from None
    _user, colon, password = text.partition(":")
    if not colon or not password:
        raise Unauthenticated("Authorization: Basic credentials need the API key (or JWT) as the password")
    return password


def _from_headers(auth: Authenticator, environ: dict[str, Any]) -> Principal | None:
    header = environ.get("HTTP_AUTHORIZATION")
    if header is not None:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if not credential or scheme.lower() not in ("bearer", "basic"):
            raise Unauthenticated(_BAD_HEADER)
        if scheme.lower() == "basic":
            credential = _basic_password(credential)
        return auth.from_bearer(credential)
    key = environ.get("HTTP_X_API_KEY")
    return auth.from_key(key.strip()) if key is not None else None


class MetricsAuth:
    """The metrics port's guard (``Guard``: wraps its WSGI app). ``audit``: denials are recorded there;
    ``denied(reason)``: counts one (``unauthenticated``, ``permission_denied``); ``reload_interval`` > 0:
    re-read the auth file at most that often, as requests come (where no event loop does it)."""

    def __init__(
        self,
        policy: AuthPolicy,
        *,
        audit: AuditLog | None = None,
        denied: Callable[[str], None] | None = None,
        reload_interval: float = 0.0,
        owns_audit: bool = False,
    ) -> None:
        self.policy = policy
        self.audit = audit
        self._denied = denied or (lambda reason: None)
        self._reload_interval = reload_interval
        self._next_reload = time.monotonic() + reload_interval
        self._owns_audit = owns_audit

    def __call__(self, app: WSGIApp) -> WSGIApp:
        def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            principal: Principal | None = None
            try:
                principal = self.authenticate(environ)
                self.authorize(principal, environ)
            except (Unauthenticated, PermissionDenied) as e:
                return self._refuse(environ, start_response, principal, e)
            return app(environ, start_response)

        return guarded

    def authenticate(self, environ: dict[str, Any]) -> Principal:
        """The request's principal: from its headers, else from its client certificate."""
        if self._reload_interval > 0 and time.monotonic() >= self._next_reload:
            self._next_reload = time.monotonic() + self._reload_interval
            self.policy.reload()
        auth = self.policy.authenticator  # once: a reload meanwhile does not mix two files
        principal = _from_headers(auth, environ)
        if principal is None:
            der = environ.get("ortserve.peer_certificate")
            if der:
                try:
                    context = certificate_context(der)
                except ValueError:  # the handshake verified it; cryptography cannot read it all the same
                    raise Unauthenticated("the client certificate cannot be read") from None
                principal = auth.from_certificate(context)
        if principal is None:
            raise Unauthenticated(_NO_CREDENTIALS)
        return principal

    @staticmethod
    def authorize(principal: Principal, environ: dict[str, Any]) -> None:
        scope = principal.grants.scope(GROUP)
        path = _path(environ)
        if scope is None:
            roles = ", ".join(principal.roles) or "none"
            raise PermissionDenied(
                f"{principal.name} (roles: {roles}) may not read {path}: no role grants the {GROUP!r} group"
            )
        if scope is not ALL:
            raise PermissionDenied(
                f"{principal.name} may read metrics only of models matching {', '.join(scope)}, and {path} "
                "shows every model: it needs a grant of the 'metrics' group on all models"
            )

    def _refuse(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        principal: Principal | None,
        error: ServeError,
    ) -> list[bytes]:
        unauthenticated = isinstance(error, Unauthenticated)
        status = "401 Unauthorized" if unauthenticated else "403 Forbidden"
        self._denied("unauthenticated" if unauthenticated else "permission_denied")
        if self.audit is not None:
            self.audit.record(
                "http",
                method=f"{environ.get('REQUEST_METHOD', 'GET')} {_path(environ)}",
                group=GROUP,
                principal=principal.name if principal is not None else "anonymous",
                peer=environ.get("ortserve.peer") or environ.get("REMOTE_ADDR", ""),
                model="",  # the fields of a denied RPC's record, which name no model here
                version="",
                variant="",
                decision="deny",
                status=status,
                message=str(error),
                request_id=str(environ.get("HTTP_X_REQUEST_ID", ""))[:128] or uuid.uuid4().hex,
            )
        body = f"{status[4:]}: {error}\n".encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        if not unauthenticated:
            headers.append(("WWW-Authenticate", f'Bearer {_REALM}, error="insufficient_scope"'))
        elif _sent_credentials(environ):
            headers.append(("WWW-Authenticate", f'Bearer {_REALM}, error="invalid_token"'))
        else:
            headers.append(("WWW-Authenticate", f"Bearer {_REALM}"))
        if unauthenticated:  # a browser asks for a user name and password (the key) on this one
            headers.append(("WWW-Authenticate", f'Basic {_REALM}, charset="UTF-8"'))
        start_response(status, headers)
        return [body]

    def close(self) -> None:
        if self._owns_audit and self.audit is not None:
            self.audit.close()


def _path(environ: dict[str, Any]) -> str:
    return str(environ.get("PATH_INFO") or "/")[:256]


def _sent_credentials(environ: dict[str, Any]) -> bool:
    return "HTTP_AUTHORIZATION" in environ or "HTTP_X_API_KEY" in environ


def supervisor_guard(settings: Settings) -> MetricsAuth | None:
    """The guard of the ``--workers`` supervisor's metrics port, which has no ``App``: its own auth policy
    (re-read as requests come, every ``auth_poll_interval``), audit log and denials counter (in
    multiprocess mode, summed with the workers'). None when the port is open (no auth file, or
    ``--open-metrics``); SettingsError when the auth file is refused."""
    if settings.auth_file is None or settings.open_metrics:
        return None
    from prometheus_client import CollectorRegistry

    from ortserve.metrics.security import auth_denied_counter

    try:
        policy = AuthPolicy(settings.auth_file)
    except AuthFileError as e:
        raise SettingsError(f"--auth-file: {e}") from None
    counter = auth_denied_counter(CollectorRegistry())  # its values go to the multiprocess folder
    audit = AuditLog(settings.audit_log) if settings.audit_log is not None else None
    return MetricsAuth(
        policy,
        audit=audit,
        denied=lambda reason: counter.labels(GROUP, reason).inc(),
        reload_interval=settings.auth_poll_interval,
        owns_audit=True,
    )
