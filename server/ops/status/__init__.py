"""The metrics port: Prometheus ``/metrics`` and the operator's status page (``/``, ``/status``,
``/status.json``): models and versions (default, ready, sha256, signed, model card), the flag splits and
shadows, and request rate, p99 latency and error ratio per model version and flag variant over the last
minutes, as server-rendered HTML with inline SVG charts and no script.

Nothing here runs on the event loop or on the request path. The page has its own thread, which samples the
metrics registry into a ring buffer (:mod:`.history`) and takes a snapshot of the state (:mod:`.state`:
``from_app`` on the loop for a server, ``from_disk`` for the ``--workers`` supervisor) every ``interval``
seconds; a page request renders from those (:mod:`.render`) in the HTTP server's threads (:mod:`.http`).

    server = serve_metrics_port(registry, "127.0.0.1", 8002, state=lambda: ..., interval=5, window=600)
    server.port; server.shutdown()

Imports neither grpc nor onnxruntime, so that the supervisor, which forks workers, can use it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from ortserve.ops.status.http import Guard, MetricsServer, WSGIApp, status_app
from ortserve.ops.status.page import StatusPage
from ortserve.ops.status.render import Panel
from ortserve.ops.status.rollouts import read_rollouts
from ortserve.ops.status.state import Admission, ServerState, from_app, from_disk, ready_in, with_rollouts

__all__ = [
    "Admission",
    "Guard",
    "MetricsServer",
    "Panel",
    "ServerState",
    "StatusPage",
    "WSGIApp",
    "from_app",
    "from_disk",
    "on_loop",
    "read_rollouts",
    "ready_in",
    "serve_metrics_port",
    "with_rollouts",
]


def on_loop(
    loop: asyncio.AbstractEventLoop, snapshot: Callable[[], ServerState], timeout: float
) -> Callable[[], ServerState]:
    """A state source for the page's thread that runs ``snapshot`` on ``loop`` (where the state lives) and
    waits at most ``timeout`` seconds for it; the loop itself never waits for the page."""

    async def take() -> ServerState:
        return snapshot()

    def source() -> ServerState:
        return asyncio.run_coroutine_threadsafe(take(), loop).result(timeout)

    return source


def serve_metrics_port(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    state: Callable[[], ServerState] | None,
    interval: float = 5.0,
    window: float = 600.0,
    guard: Guard | None = None,
    panels: Sequence[Panel] = (),
    restrict: bool = True,
    ssl_context: ssl.SSLContext | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` and, when ``state`` is given, the status page on ``host:port`` (port 0: a free one).
    ``restrict=False`` for a registry whose collectors declare no metric names (multiprocess mode);
    ``ssl_context``: HTTPS (``ortserve.ops.metrics_http`` makes it, with certificate rotation)."""
    page = (
        StatusPage(registry, state, interval=interval, window=window, panels=panels, restrict=restrict)
        if state
        else None
    )
    app = status_app(registry, page)
    return MetricsServer(guard(app) if guard is not None else app, host, port, page, ssl_context)
