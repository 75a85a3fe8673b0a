"""The metrics port (``/metrics`` and the status page, :mod:`ortserve.ops.status`), over HTTPS with
``--metrics-tls``.

With TLS the listening socket's context gets a handshake callback that
stats the certificate files and, when they changed and check out, hands the handshake a context
with the new certificate, so rotation needs no restart here either (the listening socket and the
connections already open are left alone). ``--tls-client-ca`` makes scrapers present a certificate.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ortserve.metrics import Metrics
from ortserve.ops.status import Guard, MetricsServer, ServerState, serve_metrics_port

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["start_metrics_server"]

log = logging.getLogger("ortserve.tls")


def _context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Rotation:
    def __init__(self, cert: Path, key: Path, client_ca: Path | None, metrics: Metrics | None) -> None:
        self.files = (cert, key, client_ca)
        self.metrics = metrics
        self.current: ssl.SSLContext | None = None  # None: the listening socket's own context
        self.stamps = self._stamps()
        self._lock = threading.Lock()

    def _stamps(self) -> tuple:
        out: list[tuple | None] = []
        for path in self.files:
            try:
                st = os.stat(path) if path is not None else None
                out.append((st.st_mtime_ns, st.st_size, st.st_ino) if st else None)
            except OSError:
                out.append(("missing",))
        return tuple(out)

    def on_handshake(self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx) -> None:
        stamps = self._stamps()
        if stamps != self.stamps:
            with self._lock:
                if stamps != self.stamps:
                    self.stamps = stamps
                    try:
                        fresh = _context(*self.files)  # type: ignore[arg-type]
                    except (OSError, ssl.SSLError) as e:
                        log.error("metrics TLS certificate change refused, the last good one serves: %s", e)
                        self._count("refused")
                    else:
                        fresh.sni_callback = self.on_handshake
                        self.current = fresh
                        log.info("metrics TLS certificate reloaded from %s", self.files[0])
                        self._count("ok")
        if self.current is not None and sock.context is not self.current:
            sock.context = self.current

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.tls_reloads.labels("metrics", outcome).inc()


def start_metrics_server(
    port: int,
    host: str,
    registry: Collector,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    client_ca: Path | None = None,
    metrics: Metrics | None = None,
    state: Callable[[], ServerState] | None = None,
    interval: float = 5.0,
    window: float = 600.0,
    guard: Guard | None = None,
    restrict: bool = True,
) -> MetricsServer:
    """``/metrics`` and, with ``state``, the status page (:mod:`ortserve.ops.status`) on ``host:port``;
    HTTPS when ``cert`` and ``key`` are given (``client_ca``: scrapers and browsers present a certificate)."""
    context = None
    if cert is not None and key is not None:
        context = _context(Path(cert), Path(key), client_ca)
        context.sni_callback = _Rotation(Path(cert), Path(key), client_ca, metrics).on_handshake
        if metrics is not None:
            metrics.tls_reloads.labels("metrics", "ok").inc()
    return serve_metrics_port(
        registry,  # type: ignore[arg-type]
        host,
        port,
        state=state,
        interval=interval,
        window=window,
        guard=guard,
        restrict=restrict,
        ssl_context=context,
    )
