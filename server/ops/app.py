"""Wiring and lifecycle: ``serve`` = ``startup`` -> ``main_loop`` -> ``shutdown``.

Signals only set state: the first SIGTERM/SIGINT starts the drain (``ortserve.ops.drain``:
health NOT_SERVING, ``drain_delay`` of serving on, then new RPCs UNAVAILABLE while every RPC
received is answered, then the server stops), all within ``grace_period``; a second one cuts it
short.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from ortserve.core import Hooks, InferenceCore, ModelManager, SessionDefaults
from ortserve.core.budget import ByteBudget
from ortserve.edge.health import Health
from ortserve.edge.inflight import InFlight
from ortserve.edge.interceptors import Interceptor
from ortserve.edge.server import build_server
from ortserve.errors import ProviderUnavailable
from ortserve.metrics import Metrics
from ortserve.ops.access import AccessLog
from ortserve.ops.drain import drain
from ortserve.ops.metrics_http import start_metrics_server
from ortserve.ops.monitoring import Monitoring
from ortserve.ops.resources import HeapTrimmer, admission_limits, give_back_large_blocks
from ortserve.ops.security import Security
from ortserve.ops.settings import Settings
from ortserve.ops.status import Guard, MetricsServer, from_app, on_loop, with_rollouts
from ortserve.rollout import Collector, FlagRouter, FlagSource, RolloutController, RolloutStore, ShadowMirror

__all__ = ["App", "run"]

log = logging.getLogger("ortserve")


class App:
    def __init__(
        self,
        settings: Settings,
        on_ready: Callable[[App], None] | None = None,
        worker: int | None = None,
        links: Sequence[Interceptor] = (),
        metrics_guard: Guard | None = None,
    ) -> None:
        self.settings = settings
        self.links = list(links)  # the interceptor chain
        # wraps the metrics port's WSGI app (/metrics, status page); None: the auth file's check
        # (ortserve.ops.metrics_auth) when there is one, else nothing
        self.metrics_guard = metrics_guard
        self._on_ready = on_ready
        self.worker = worker
        self.metrics = Metrics()
        self.health = Health()
        self.executor: ThreadPoolExecutor | None = None
        self.models: ModelManager | None = None
        self.core: InferenceCore | None = None
        self.monitoring: Monitoring | None = None
        self.flags: FlagSource | None = None
        self.inflight = InFlight(metrics=self.metrics)  # RPCs in flight: admission and the drain
        self.rollouts: RolloutController | None = None
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port = 0
        self._metrics_server: MetricsServer | None = None
        self.security: Security | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.trimmer = HeapTrimmer(settings.heap_trim_interval)  # free heap memory back to the system

    # -- phases --------------------------------------------------------------------------------
    async def startup(self) -> None:
        s = self.settings
        self.security = security = Security(s, self.metrics)  # TLS, auth and audit files: fatal if bad
        if s.metrics_port >= 0:  # /metrics and the status page, in threads of their own (ops.status)
            tls = s.metrics_tls
            state = with_rollouts(  # the rollouts from their folder, read in the page's thread
                on_loop(asyncio.get_running_loop(), lambda: from_app(self), timeout=5.0), s.rollout_path
            )
            self._metrics_server = start_metrics_server(
                s.metrics_port,
                s.metrics_host,
                self.metrics.registry,
                metrics=self.metrics,
                state=state if s.status_page else None,
                interval=s.status_interval,
                window=s.status_window,
                guard=self.metrics_guard if self.metrics_guard is not None else security.metrics_guard(),
                cert=s.tls_cert if tls else None,
                key=s.tls_key if tls else None,
                client_ca=s.tls_client_ca if tls else None,
            )
            self.metrics_port = self._metrics_server.port
        threads = s.inference_threads or max(8, os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ort")
        collector = Collector()  # what the arms of each rollout did, in this process
        self.monitoring = monitoring = Monitoring(s, self.metrics, on_feedback=collector.on_feedback)
        self.models = ModelManager(
            s.model_repository,
            self.executor,
            self.metrics,
            max_input_elements=s.max_input_elements,
            require_manifest=s.require_manifest,
            on_change=self.health.model_changed,
            drain_timeout=s.grace_period,
            tracing=monitoring.tracing,
            verifier=security.verifier,
            sessions=SessionDefaults(s.allow_cpu_fallback, s.cache_dir),
        )
        await self.models.sync()
        refused = self.models.provider_refusals()
        if refused:
            # A node or image without the GPU its models need: fail visibly (the pod restarts and is
            # never Ready, a rolling update stops) instead of serving many times slower on the CPU.
            log.error(
                "refusing to start (exit status 3): %s",
                "; ".join(refused),
                extra={"event": "startup_refused", "reason": "execution_provider"},
            )
            raise ProviderUnavailable("; ".join(refused))
        if not self.models.ready_models():
            log.warning("no model loaded from %s", s.model_repository)
        router = FlagRouter(self.models, self.metrics)
        self.flags = FlagSource(s.flags_path, router, self.models, self.metrics)
        await self.flags.load()
        shadow = ShadowMirror(self.metrics, s.shadow_queue_size, on_compared=collector.on_shadow)
        hooks = Hooks()
        hooks.add(shadow)
        hooks.add(collector)
        if s.access_log:
            hooks.add(AccessLog())
        for hook in monitoring.hooks:
            hooks.add(hook)
        limits = admission_limits(s)
        self.inflight.limit = limits.concurrent_rpcs
        budget = ByteBudget(limits.inflight_bytes, self.metrics)
        self.core = InferenceCore(
            self.models, self.metrics, router, hooks, monitoring.feedback, monitoring.tracing, budget=budget
        )
        # The leader acts on rollouts: this server, or worker 0 under --workers (the others count and answer).
        self.rollouts = RolloutController(
            RolloutStore(s.rollout_path),
            self.flags,
            self.models,
            collector,
            self.metrics,
            leader=self.worker in (None, 0),
            worker=str(self.worker or 0),
            workers=s.workers,
            interval=s.rollout_interval,
            log_interval=s.rollout_log_interval,
            audit=security.audit.record if security.audit is not None else None,
        )
        await self.rollouts.open()
        self.server, self.port = build_server(
            self.core,
            self.flags,
            self.health,
            address=f"{s.host}:{s.port}",
            max_message_size=s.max_message_size,
            workers=s.workers,
            links=[self.inflight, *security.links(self.flags), *self.links],
            interceptors=monitoring.interceptors,
            credentials=security.credentials,
            rollouts=self.rollouts,
        )
        await self.server.start()
        await security.start(self.health)
        await self.health.set("", True)
        if s.poll_interval > 0:
            self._spawn(_every(s.poll_interval, self._sync_models, "repository scan"))
        if s.flags_poll_interval > 0:
            self._spawn(_every(s.flags_poll_interval, self.flags.load, "flags reload"))
        if security.policy is not None and s.auth_poll_interval > 0:
            self._spawn(_every(s.auth_poll_interval, _sync(security.reload_auth), "auth file reload"))
        for _ in range(s.shadow_workers):
            self._spawn(shadow.run())
        self._spawn(self.rollouts.run())
        monitoring.start(self._spawn, self.core.versions)
        if self._metrics_server is not None and self._metrics_server.page is not None:
            self._metrics_server.page.poke()  # the status page shows the loaded models now, not an interval later
        # What startup made (modules, sessions, protobuf descriptors) lives as long as the process:
        # out of the cyclic collector's reach, a full collection no longer walks it (on the demo it
        # took 200-500 ms per full collection, every few seconds under load, all on the event loop).
        gc.collect()
        gc.freeze()
        self.trimmer.start()
        if self._on_ready is not None:  # a worker under the supervisor, which logs the ready event
            log.info(
                "worker %s serving gRPC on %s:%d, models: %s",
                self.worker,
                s.host,
                self.port,
                ", ".join(self.models.ready_models()) or "none",
                extra={"event": "worker_ready"},
            )
            self._on_ready(self)
            return
        log.info(
            "serving gRPC on %s:%d, metrics on %s:%d, models: %s",
            s.host,
            self.port,
            s.metrics_host,
            self.metrics_port,
            ", ".join(self.models.ready_models()) or "none",
            extra={
                "event": "ready",
                "grpc_port": self.port,
                "metrics_port": self.metrics_port,
                "health_port": security.health_port,
                "gil_switch_interval_us": round(sys.getswitchinterval() * 1e6),  # what the process runs with
            },
        )

    async def _sync_models(self) -> None:
        models = self.models
        assert models is not None  # started
        before = models.loaded_versions()
        await models.sync()
        if models.loaded_versions() != before:
            gc.freeze()  # the new version's objects join the startup ones, out of the collector's way

    async def main_loop(self) -> None:
        await self._stop.wait()

    async def shutdown(self) -> None:
        s = self.settings
        log.info("shutting down: draining for up to %.1fs", s.grace_period, extra={"event": "shutting_down"})
        if self.rollouts is not None:
            await self.rollouts.close()  # a rollout's move in progress is finished and saved first
        if self.server is not None:
            await drain(
                self.server,
                self.inflight,
                self.health,
                grace=s.grace_period,
                delay=s.drain_delay,
                force=self._force,
            )
        else:
            await self.health.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.models is not None:
            await self.models.close()
        if self.monitoring is not None:
            await self.monitoring.close()
        if self.core is not None:
            self.core.decoder.close()
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.trimmer.stop()
        if self.security is not None:
            await self.security.close()
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
    @property
    def draining(self) -> bool:
        """A SIGTERM/SIGINT came: the drain has started (the status page says so)."""
        return self._stop.is_set()

    def handle_exit(self) -> None:
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        if self._metrics_server is not None and self._metrics_server.page is not None:
            self._metrics_server.page.poke()  # the status page shows the drain at once

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _every(interval: float, action: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``action`` every ``interval`` seconds until cancelled; a failure is logged, never fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await action()
        except Exception:
            log.exception("%s failed", what)


def _sync(action: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return action()

    return call


def run(settings: Settings, on_ready: Callable[[App], None] | None = None, worker: int | None = None) -> None:
    """Run the server until SIGTERM/SIGINT, on uvloop where it is installed."""
    give_back_large_blocks()  # memory of large requests goes back to the system once answered
    # The loop holds the GIL while it answers; a batch's thread waits for it to start ONNX Runtime
    # and to hand its outputs back (by default up to 5 ms each: measured 3 ms of every ~35 ms batch
    # of the CNN at 1 thread, its session idle meanwhile; benchmarks/RESULTS.md, "Adaptive batching").
    sys.setswitchinterval(settings.gil_switch_interval_us / 1e6)
    app = App(settings, on_ready, worker)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(app.serve())
    else:
        uvloop.run(app.serve())
