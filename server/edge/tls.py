"""TLS for the gRPC port, with certificates re-read when their files change.

    files = CertificateFiles(cert, key, client_ca, on_reload=...)
    server.add_secure_port(address, files.server_credentials())

gRPC asks ``files`` for the current configuration at each new connection's handshake
(``grpc.dynamic_ssl_server_credentials``); a stat of the three files tells whether they changed.
A changed set is read and checked (the key must match the certificate, the CA must parse) before
it is used: a half-written or mismatched pair is refused, logged and counted, and the last good
certificate keeps serving. Connections already open keep their session; the next one gets the new
certificate. With a client CA, clients must present a certificate it signed (mTLS).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

__all__ = ["CertificateFiles", "TlsError", "certificate_expiry"]

log = logging.getLogger("ortserve.tls")


class TlsError(OSError):
    """A certificate, key or CA file that cannot be used; the message names it."""


def _stamp(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def certificate_expiry(cert_pem: bytes) -> float:
    """The notAfter of the first certificate in ``cert_pem``, as a Unix time."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()


def check_pair(cert: Path, key: Path, client_ca: Path | None) -> tuple[bytes, bytes, bytes | None]:
    """Read the files and check that the key matches the certificate; TlsError when not."""
    try:
        cert_pem, key_pem = Path(cert).read_bytes(), Path(key).read_bytes()
        ca_pem = Path(client_ca).read_bytes() if client_ca is not None else None
    except OSError as e:
        raise TlsError(f"cannot read {e.filename}: {e.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise TlsError(
            f"--tls-cert {cert} / --tls-key {key}: not a matching certificate and key ({e})"
        ) from None
    if ca_pem is not None:
        try:
            context.load_verify_locations(cadata=ca_pem.decode())
        except (ssl.SSLError, ValueError) as e:
            raise TlsError(f"--tls-client-ca {client_ca}: not PEM CA certificates ({e})") from None
    return cert_pem, key_pem, ca_pem


class CertificateFiles:
    """The server certificate (and client CA) files; ``on_reload(outcome, expiry)`` is called after each
    check of changed files with "ok" or "refused" and the expiry of the certificate now serving."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        on_reload: Callable[[str, float], None] | None = None,
    ) -> None:
        self.cert, self.key, self.client_ca = Path(cert), Path(key), client_ca
        self._on_reload = on_reload or (lambda outcome, expiry: None)
        self._lock = threading.Lock()
        self._stamps = self._current_stamps()
        cert_pem, key_pem, self._ca = check_pair(self.cert, self.key, client_ca)  # at start: fatal
        self.expiry = certificate_expiry(cert_pem)
        self._initial = self._configuration(cert_pem, key_pem, self._ca)
        self._on_reload("ok", self.expiry)

    def _current_stamps(self) -> tuple:
        return (_stamp(self.cert), _stamp(self.key), _stamp(self.client_ca))

    @staticmethod
    def _configuration(cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None):
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca_pem)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self.fetch, require_client_authentication=self.client_ca is not None
        )

    def fetch(self):
        """gRPC's certificate-configuration fetcher: a new configuration when the files changed
        and check out, else None (keep the current one). Runs on a gRPC thread at each handshake."""
        stamps = self._current_stamps()
        if stamps == self._stamps:
            return None
        with self._lock:
            if stamps == self._stamps:
                return None
            self._stamps = stamps
            try:
                cert_pem, key_pem, ca_pem = check_pair(self.cert, self.key, self.client_ca)
                expiry = certificate_expiry(cert_pem)
            except (TlsError, ValueError) as e:
                log.error("TLS certificate change refused, the last good one keeps serving: %s", e)
                self._on_reload("refused", self.expiry)
                return None
            self.expiry = expiry
            log.info("TLS certificate reloaded from %s (expires at %d)", self.cert, expiry)
            self._on_reload("ok", expiry)
            return self._configuration(cert_pem, key_pem, ca_pem)
