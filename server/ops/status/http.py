"""The metrics port's HTTP server: ``/metrics`` (Prometheus, as ``prometheus_client`` serves it: gzip and
OpenMetrics negotiated), ``/`` and ``/status`` (the status page), ``/status.json``; anything else 404.

It is a small threaded WSGI server (wsgiref), like the one ``prometheus_client.start_http_server`` runs, so a
request is answered in its own thread and never on the server's event loop. ``guard`` wraps the whole WSGI app:
authentication plugs in there (a middleware that answers 401/403 itself or calls the app;
``ortserve.ops.metrics_auth`` is the server's, with the auth file's principals).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from ortserve.ops.status.page import StatusPage

__all__ = ["Guard", "MetricsServer", "WSGIApp", "status_app"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Guard = Callable[[WSGIApp], WSGIApp]

# The page has no script and loads nothing: say so to the browser, so that nothing injected could run.
_PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]


def status_app(registry: CollectorRegistry, page: StatusPage | None) -> WSGIApp:
    """The WSGI app of the metrics port (``page`` None: ``/metrics`` only)."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"only GET and HEAD\n"]
        if path == "/metrics":
            return metrics(environ, start_response)
        if page is not None and path in ("/", "/status", "/status.json"):
            started = time.perf_counter()
            html = path != "/status.json"
            body = (page.html() if html else page.json()).encode()
            took = (time.perf_counter() - started) * 1000
            kind = "text/html; charset=utf-8" if html else "application/json"
            headers = [("Content-Type", kind), ("Content-Length", str(len(body)))]
            start_response("200 OK", [*headers, *_PAGE_HEADERS, ("Server-Timing", f"render;dur={took:.2f}")])
            return [body]
        if path == "/favicon.ico":
            start_response("204 No Content", [])
            return [b""]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        where = "/metrics, /, /status, /status.json" if page is not None else "/metrics"
        return [f"not found; this port serves {where}\n".encode()]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_environ(self) -> dict[str, Any]:
        """wsgiref's environ, plus what a guard needs of the connection: ``ortserve.peer`` (as gRPC
        names peers: ``ipv4:127.0.0.1:5000``) and, over TLS, ``ortserve.peer_certificate`` (the DER
        bytes of the client certificate the handshake verified, when there is one)."""
        environ = super().get_environ()
        host, port = self.client_address[:2]
        environ["ortserve.peer"] = f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
        if isinstance(self.connection, ssl.SSLSocket):
            der = self.connection.getpeercert(binary_form=True)
            if der:
                environ["ortserve.peer_certificate"] = der
        return environ


class MetricsServer:
    """The HTTP server in its own thread; ``port`` is the bound port (useful with port 0)."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        page: StatusPage | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        server_class: type[_Server] = _Server6 if ":" in host else _Server  # ":": an IPv6 address
        self._httpd = make_server(host, port, app, server_class, handler_class=_Quiet)
        if ssl_context is not None:  # HTTPS, as prometheus_client's own server does it
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.port: int = self._httpd.server_port
        self.server_port = self.port  # the name prometheus_client's server has
        self.page = page
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="ortserve-metrics", daemon=True
        )
        self._thread.start()
        if page is not None:
            page.start()

    def shutdown(self) -> None:
        if self.page is not None:
            self.page.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
