"""Wiring and lifecycle: ``serve`` = ``startup`` -> ``main_loop`` -> ``shutdown``.

Signals only set state: the first SIGTERM/SIGINT starts a graceful shutdown (health goes
NOT_SERVING, new RPCs are refused, in-flight ones get ``grace_period`` seconds to finish);
a second one cuts the grace short.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from .core import InferenceCore
from .metrics import Metrics
from .models import ModelManager
from .services import inference_v1
from .services.health import Health
from .settings import Settings

__all__ = ["App", "run"]

log = logging.getLogger("ortserve")


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.health = Health()
        self.executor: ThreadPoolExecutor | None = None
        self.models: ModelManager | None = None
        self.core: InferenceCore | None = None
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port = 0
        self._metrics_server = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # -- phases --------------------------------------------------------------------------------
    async def startup(self) -> None:
        s = self.settings
        if s.metrics_port >= 0:
            self._metrics_server, _ = start_http_server(s.metrics_port, s.metrics_host, registry=self.metrics.registry)
            self.metrics_port = self._metrics_server.server_port
        self.executor = ThreadPoolExecutor(max_workers=s.inference_threads or 8, thread_name_prefix="ort")
        self.models = ModelManager(s.model_repository, self.executor, self.metrics,
                                   max_input_elements=s.max_input_elements, require_manifest=s.require_manifest,
                                   on_change=self.health.model_changed, drain_timeout=s.grace_period)
        await self.models.sync()
        if not self.models.ready_models():
            log.warning("no model loaded from %s", s.model_repository)
        self.core = InferenceCore(self.models, self.metrics)

        options = [
            ("grpc.max_receive_message_length", s.max_message_size),
            ("grpc.max_send_message_length", s.max_message_size),
        ]
        self.server = grpc.aio.server(options=options)
        names = [
            inference_v1.add_to_server(self.core, self.server),
            self.health.add_to_server(self.server),
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, self.server)
        address = f"{s.host}:{s.port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot bind gRPC server to {address}: {e}") from e
        if not self.port:
            raise OSError(f"cannot bind gRPC server to {address}")
        await self.server.start()
        await self.health.set("", True)
        if s.poll_interval > 0:
            self._spawn(self.models.poll(s.poll_interval))
        log.info("serving gRPC on %s:%d, metrics on %s:%d, models: %s", s.host, self.port, s.metrics_host,
                 self.metrics_port, ", ".join(self.models.ready_models()) or "none",
                 extra={"event": "ready", "grpc_port": self.port, "metrics_port": self.metrics_port})

    async def main_loop(self) -> None:
        await self._stop.wait()

    async def shutdown(self) -> None:
        grace = self.settings.grace_period
        log.info("shutting down: refusing new requests, draining in-flight ones for up to %.1fs", grace)
        await self.health.shutdown()
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            stop = asyncio.ensure_future(self.server.stop(grace))
            force = asyncio.ensure_future(self._force.wait())
            await asyncio.wait({stop, force}, return_when=asyncio.FIRST_COMPLETED)
            if not stop.done():
                log.warning("second signal: stopping now")
                await self.server.stop(0)
            force.cancel()
        if self.models is not None:
            await self.models.close()
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("stopped", extra={"event": "stopped"})

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()

    # -- signals -------------------------------------------------------------------------------
    def handle_exit(self) -> None:
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def run(settings: Settings) -> None:
    """Run the server until SIGTERM/SIGINT, on uvloop where it is installed."""
    app = App(settings)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(app.serve())
    else:
        uvloop.run(app.serve())
