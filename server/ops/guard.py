"""Settings checks that need no server: what must go together, and secure defaults.

A gRPC port on anything but loopback needs TLS and an auth file, or ``--insecure``: the checks run
in the ``ortserve`` command before anything starts (before ``--workers`` forks) and again in
``App.startup``. Light on purpose: no gRPC import.
"""

from __future__ import annotations

import ipaddress

from ortserve.ops.settings import Settings, SettingsError

__all__ = ["check_settings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_settings(s: Settings) -> None:
    """Refuse settings that do not go together, and an exposed port without TLS and auth."""
    if (s.tls_cert is None) != (s.tls_key is None):
        raise SettingsError("--tls-cert and --tls-key go together: give both (or neither)")
    if s.tls_cert is None:
        for name, value in (("--tls-client-ca", s.tls_client_ca), ("--metrics-tls", s.metrics_tls)):
            if value:
                raise SettingsError(f"{name} needs --tls-cert and --tls-key")
    if s.require_signature and s.trusted_key is None:
        raise SettingsError(
            "--require-signature is set but --trusted-key is not: give the public key that signs versions"
        )
    if s.health_port >= 0 and s.health_port == s.port != 0:
        raise SettingsError(f"--health-port {s.health_port} is the gRPC port: pick another")
    if is_loopback(s.host) or s.insecure:
        return
    missing = [
        what
        for what, given in (("TLS (--tls-cert, --tls-key)", s.tls_cert), ("an --auth-file", s.auth_file))
        if given is None
    ]
    if missing:
        raise SettingsError(
            f"refusing to serve gRPC on {s.host}:{s.port} without {' and '.join(missing)}: anyone who can "
            "reach that address could read traffic, unload models or reroute it with SetFlags. Give them, "
            "bind to 127.0.0.1, or pass --insecure to serve it anyway (e.g. behind a mesh that does mTLS)"
        )
