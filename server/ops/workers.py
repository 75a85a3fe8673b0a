"""``ortserve --workers N``: N server processes sharing one port (SO_REUSEPORT).

The supervisor forks the workers before any gRPC object exists (it never imports the server
application itself), reserves the port so that ``--port 0`` works, serves the metrics of all
workers on one endpoint (prometheus_client's multiprocess mode, less the series of what no worker
holds any more: ``ortserve.series.LiveFilter``), forwards SIGTERM/SIGINT to every worker, each of
which drains as one server does, and restarts a worker that dies while serving, with back-off,
giving up on one that keeps crashing while the others serve (``ortserve.ops.restarts``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

from ortserve.ops.restarts import Restarts
from ortserve.ops.settings import Settings, SettingsError
from ortserve.series import LiveFilter, forget_worker

__all__ = ["serve_workers"]

log = logging.getLogger("ortserve.workers")

_EXIT_PROVIDER = 3  # a model's GPU provider cannot be created (ortserve.__main__ documents the statuses)


def _reserve_port(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot bind gRPC server to {host}:{port}: {e}") from e
    return sock  # bound, never listening: it only holds the port for the workers


def _worker(settings: Settings, index: int, ready_fd: int, reserved: list[socket.socket]) -> int:
    for sock in reserved:
        sock.close()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    from ortserve.ops.app import run  # imported after fork: no gRPC state crosses it

    def on_ready(_app) -> None:
        os.write(ready_fd, b"%d\n" % index)

    from ortserve.errors import ProviderUnavailable

    try:
        run(settings, on_ready=on_ready, worker=index)
    except (OSError, SettingsError) as e:
        log.error("worker %d: %s", index, e)
        return 1
    except ProviderUnavailable:  # logged by the app; the supervisor exits with the same status
        return _EXIT_PROVIDER
    return 0


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes until SIGTERM/SIGINT; the exit status is 0 when
    every worker served to the end, drained and exited cleanly."""
    metrics_dir = tempfile.mkdtemp(prefix="ortserve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported anywhere
    reserved = _reserve_port(settings.host, settings.port)
    port = reserved.getsockname()[1]
    held = [reserved]
    health_port = settings.health_port
    if health_port >= 0:  # the plaintext health port is shared like the gRPC port
        held.append(_reserve_port(settings.host, health_port))
        health_port = held[-1].getsockname()[1]
    child = dataclasses.replace(settings, port=port, metrics_port=-1, health_port=health_port)
    ready_r, ready_w = os.pipe()
    workers: dict[int, int] = {}  # pid -> index
    restarts = Restarts(settings.workers, settings.worker_max_restarts)
    stopping = False
    failed = False
    exit_status = 1  # the exit status when failed: a worker's own status when it could not start

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            # Its own process group: a Ctrl-C at the terminal (or a signal to the group) reaches the
            # supervisor only, which forwards it once; a second copy would cut the drain short.
            os.setpgrp()
            os.close(ready_r)
            code = 1
            try:
                code = _worker(child, index, ready_w, held)
            finally:
                os._exit(code)
        workers[pid] = index
        restarts.started(index)

    def on_signal(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        restarts.cancel()
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(settings.workers):
        spawn(i)

    from prometheus_client import CollectorRegistry, multiprocess

    from ortserve.ops.metrics_http import start_metrics_server
    from ortserve.ops.resources import admission_limits
    from ortserve.ops.status import Admission, from_disk, read_rollouts, ready_in

    ready = 0
    deadline = time.monotonic() + 120
    while ready < settings.workers and not stopping:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("workers did not start within 120 s")
            on_signal(signal.SIGTERM, None)
            failed = True
            break
        readable, _, _ = select.select([ready_r], [], [], min(remaining, 0.5))
        if readable:
            ready += os.read(ready_r, 4096).count(b"\n")
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            workers.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            log.error("worker exited with status %d before it was ready", code)
            on_signal(signal.SIGTERM, None)
            failed = True
            exit_status = code if code > 0 else 1

    metrics_server = guard = None
    if not stopping and not failed and settings.metrics_port >= 0:
        from ortserve.ops.metrics_auth import supervisor_guard

        try:  # the metrics port needs the auth file's principals, as the workers' gRPC port does
            guard = supervisor_guard(settings)
        except SettingsError as e:  # the workers took it a moment ago: changed since, and refused
            log.error("%s", e)
            on_signal(signal.SIGTERM, None)
            failed = True
    if not stopping and not failed:
        metrics_port = 0
        if settings.metrics_port >= 0:
            registry = CollectorRegistry()
            registry.register(
                LiveFilter(multiprocess.MultiProcessCollector(None, path=metrics_dir), Path(metrics_dir))
            )
            registry.register(restarts)

            limits = admission_limits(settings)  # each worker's; the page shows the workers' sums
            bounds = Admission(
                limits.inflight_bytes * settings.workers, limits.concurrent_rpcs * settings.workers
            )

            def state():  # type: ignore[no-untyped-def]
                # The supervisor has no core: the repository and flags file as on disk, readiness as the
                # workers report it (ortserve.ops.status.state.from_disk).
                ready = ready_in(registry)
                return dataclasses.replace(
                    from_disk(
                        settings.model_repository,
                        settings.flags_path,
                        lambda model, version: (model, version) in ready,
                        settings.workers,
                        dataclasses.replace(bounds, draining=stopping),
                    ),
                    rollouts=read_rollouts(settings.rollout_path),
                )

            tls = settings.metrics_tls
            metrics_server = start_metrics_server(
                settings.metrics_port,
                settings.metrics_host,
                registry,
                cert=settings.tls_cert if tls else None,
                key=settings.tls_key if tls else None,
                client_ca=settings.tls_client_ca if tls else None,
                state=state if settings.status_page else None,
                interval=settings.status_interval,
                window=settings.status_window,
                restrict=False,  # the MultiProcessCollector declares no names: collect it whole
                guard=guard,
            )
            metrics_port = metrics_server.port
        log.info(
            "serving gRPC on %s:%d with %d workers, metrics on %s:%d",
            settings.host,
            port,
            settings.workers,
            settings.metrics_host,
            metrics_port,
            extra={
                "event": "ready",
                "grpc_port": port,
                "metrics_port": metrics_port,
                "health_port": max(health_port, 0),
            },
        )

    while workers or (not stopping and restarts.next_due() is not None):
        wait = restarts.next_due()
        readable, _, _ = select.select([ready_r], [], [], 0.1 if wait is None else min(wait, 0.1))
        if readable:
            os.read(ready_r, 4096)
        for index in restarts.due():
            if not stopping:
                spawn(index)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            continue
        if not pid or pid not in workers:
            continue
        index = workers.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        multiprocess.mark_process_dead(pid, metrics_dir)
        forget_worker(Path(metrics_dir), pid)
        if stopping:
            # A worker still starting up when the signal came had nothing in flight: the signal's
            # default action ended it. A serving worker drains and exits 0.
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                failed = True
                log.error("worker %d exited with status %d", index, code)
            continue
        delay = restarts.exited(index)
        if delay is None:
            failed = True
            log.error(
                "worker %d exited with status %d, %d times in a row: giving up on it; %d of %d workers serve",
                index,
                code,
                restarts.in_a_row(index),
                len(workers),
                settings.workers,
                extra={"event": "worker_given_up", "worker": index},
            )
            if not workers and restarts.next_due() is None:
                log.error("no worker is left serving: stopping")
                break
            continue
        log.error(
            "worker %d exited with status %d while serving; restarting it in %.1fs",
            index,
            code,
            delay,
            extra={"event": "worker_restarting", "worker": index},
        )

    if metrics_server is not None:
        metrics_server.shutdown()
    if guard is not None:
        guard.close()
    for sock in held:
        sock.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("stopped", extra={"event": "stopped"})
    return exit_status if failed else 0
