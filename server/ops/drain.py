"""The drain on SIGTERM/SIGINT: stop taking work without losing any that was received.

    1. health turns NOT_SERVING (the server, every model): probes and load balancers see it;
    2. for ``--drain-delay`` seconds the server keeps serving as before, while load balancers take
       it out of rotation (Kubernetes' preStop pattern);
    3. new RPCs are answered UNAVAILABLE (clients retry them elsewhere) while every RPC already
       received runs to its answer, open request streams included (``edge.inflight.InFlight``);
    4. only then does the gRPC server stop: calling ``server.stop`` at once would cancel the calls
       gRPC had received but not yet handed to a handler (they end CANCELLED, which clients do not
       retry). It stops once no new RPC has come for ``QUIET_S`` (every call gRPC held has then
       reached the server and was answered), or ``LINGER_S`` after the last answer when clients
       keep sending to a server that refuses them.

``--grace-period`` bounds the whole; what is still in flight when it ends (or at a second signal)
is cancelled, and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

import grpc

from ortserve.edge.health import Health
from ortserve.edge.inflight import InFlight

__all__ = ["drain"]

log = logging.getLogger("ortserve")

QUIET_S = 0.1
LINGER_S = 1.0


async def _unless(force: asyncio.Event, work: Awaitable[object], timeout: float) -> object | None:
    """``work``'s result, or None when ``timeout`` passed or ``force`` was set first."""
    task = asyncio.ensure_future(work)
    forced = asyncio.ensure_future(force.wait())
    try:
        done, _ = await asyncio.wait(
            {task, forced}, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        forced.cancel()
        if not task.done():
            task.cancel()
    return task.result() if task in done else None


async def _quiet(inflight: InFlight, force: asyncio.Event, until: float) -> None:
    """Until no RPC was refused for QUIET_S and none is in flight (or ``until``, or ``force``)."""
    while not force.is_set():
        now = time.monotonic()
        wait = QUIET_S - (now - inflight.last_refused)
        if now >= until or (wait <= 0 and inflight.count == 0):
            return
        await asyncio.sleep(min(max(wait, 0.005), until - now))


async def drain(
    server: grpc.aio.Server,
    inflight: InFlight,
    health: Health,
    *,
    grace: float,
    delay: float,
    force: asyncio.Event,
) -> None:
    """Drain and stop ``server`` within ``grace`` seconds (less when ``force`` is set)."""
    end = time.monotonic() + grace
    await health.shutdown()
    if delay > 0 and not force.is_set():
        log.info(
            "draining: health is NOT_SERVING; still serving for %.1fs (--drain-delay)",
            min(delay, grace),
            extra={"event": "drain_delay"},
        )
        await _unless(force, asyncio.sleep(min(delay, grace)), min(delay, grace))
    inflight.close()
    log.info(
        "draining: new RPCs get UNAVAILABLE; answering the %d in flight (up to %.1fs)",
        inflight.count,
        max(0.0, end - time.monotonic()),
        extra={"event": "draining", "in_flight": inflight.count},
    )
    idle = False
    if not force.is_set():
        idle = bool(await _unless(force, inflight.wait_idle(None), end - time.monotonic()))
    if idle:
        await _quiet(inflight, force, min(end, time.monotonic() + LINGER_S))
        await server.stop(max(0.0, min(LINGER_S, end - time.monotonic())))
        log.info("drained: every RPC received was answered", extra={"event": "drained"})
        return
    why = "second signal" if force.is_set() else "grace period over"
    log.warning(
        "%s: stopping now, cancelling %d RPCs still in flight",
        why,
        inflight.count,
        extra={"event": "drain_cut", "in_flight": inflight.count},
    )
    await server.stop(0)
