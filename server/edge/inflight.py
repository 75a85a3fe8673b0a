"""The RPCs in flight: admission by count, and the drain that loses none of them.

``InFlight`` is the first link of the interceptor chain (``ortserve.edge.interceptors``), so it
sees every RPC of every kind before anything else runs:

- over ``limit`` RPCs in flight, a new one is refused at once: ``Overloaded`` (RESOURCE_EXHAUSTED),
  counted in ``ortserve_admission_rejected_total{reason="rpcs"}``;
- once ``close()`` is called (the drain), every new RPC is refused with ``Unavailable``
  (UNAVAILABLE: clients retry it, and a load balancer sends the retry to another replica), while
  the RPCs already in flight run to their answer; an open request stream is cut at its next
  message: the RPC answers what it has read, then ends UNAVAILABLE;
- ``wait_idle(timeout)`` waits until no RPC is in flight, ``last_refused`` says when the drain
  last refused one (gRPC cancels the calls it has received but not yet handed to the server when
  it stops, so the drain stops it once they have stopped coming, ``ortserve.ops.drain``).

Health checks are neither counted nor refused: a probe must get its answer (NOT_SERVING while
draining) however busy the server is, and a ``Watch`` stream must not hold the drain open.

    inflight = InFlight(limit=4096, metrics=metrics)
    server = build_server(..., links=[inflight, *others])
    inflight.close(); await inflight.wait_idle(timeout=10); await server.stop(0)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc

from ortserve.edge.interceptors import Interceptor, Rpc
from ortserve.errors import Overloaded, Unavailable
from ortserve.metrics import Metrics

__all__ = ["EXEMPT", "InFlight"]

EXEMPT = frozenset({"health"})
DRAINING = "the server is shutting down; retry, another replica or the restarted server will answer"


class InFlight(Interceptor):
    def __init__(self, limit: int = 0, metrics: Metrics | None = None) -> None:
        self.limit = limit  # 0: no bound
        self.count = 0
        self._counted: set[int] = set()  # id(context) of the RPCs counted (leave runs for refused ones too)
        self._refused = metrics.admission_rejected.labels("rpcs") if metrics is not None else None
        self.closed = False
        self.last_refused = 0.0  # time.monotonic() of the last RPC refused by the drain
        self._closing: asyncio.Future[None] | None = None  # resolved by close(); made on first use
        self._idle: asyncio.Event | None = None

    async def enter(self, rpc: Rpc, context: grpc.aio.ServicerContext) -> None:
        if rpc.group in EXEMPT:
            return
        if self.closed:
            self.last_refused = time.monotonic()
            raise Unavailable(DRAINING)
        if self.limit and self.count >= self.limit:
            if self._refused is not None:
                self._refused.inc()
            raise Overloaded(
                "rpcs", f"server busy: {self.count} RPCs in flight, the bound is {self.limit}; retry later"
            )
        self.count += 1
        self._counted.add(id(context))

    def leave(self, rpc: Rpc, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        key = id(context)
        if key in self._counted:
            self._counted.discard(key)
            self.count -= 1
            if self.count == 0 and self._idle is not None:
                self._idle.set()

    def requests(self, rpc: Rpc, stream: AsyncIterable[Any]) -> AsyncIterable[Any]:
        if rpc.group in EXEMPT:
            return stream
        return self._until_closed(stream)

    async def _until_closed(self, stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
        """The stream's messages until the drain starts: then ``Unavailable``, also while waiting
        for a client that keeps its stream open without sending."""
        messages = aiter(stream)
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        closing = self._closing
        while True:
            if self.closed:
                raise Unavailable(DRAINING)
            following = asyncio.ensure_future(anext(messages))
            await asyncio.wait((following, closing), return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                raise Unavailable(DRAINING)
            try:
                message = following.result()
            except StopAsyncIteration:
                return
            finally:
                del following  # it holds the end of the stream, whose traceback holds this frame
            yield message

    def close(self) -> None:
        """Start the drain: refuse new RPCs, cut open request streams at their next message."""
        self.closed = True
        self.last_refused = time.monotonic()  # the quiet period counts from here
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)

    async def wait_idle(self, timeout: float | None) -> bool:
        """True once no RPC is in flight; False when ``timeout`` seconds passed first."""
        if self.count == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return self.count == 0
        return True
