"""The context every servicer method runs in: errors mapped to a status once, failures before
the core counted once.

    async def Predict(self, request, context):
        async with self.edge.call(context, "v1", request.model):
            response = await self.core.infer(decode(request, context))
            return encode(response)

A ``ServeError`` raised inside the block (by decoding, by the core, by the servicer) aborts the
RPC with the status ``ortserve.edge.status`` gives it and the error's message; any other
exception is a bug: logged with its traceback and answered INTERNAL. When ``model`` is given the
call is an inference request: a failure the core has not counted (one raised while decoding) is
counted through ``core.reject``. Stream items use ``edge.item(...)``, which keeps the status and
message for the stream's own answer instead of aborting the stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from types import TracebackType

import grpc

from ortserve.core import InferenceCore, InferRequest
from ortserve.edge.status import status_for
from ortserve.errors import InternalError, ServeError, quoted

__all__ = ["Edge", "EdgeCall", "ItemCall", "deadline_from", "invocation_metadata", "new_request_id"]

log = logging.getLogger("ortserve.requests")

_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique per server process and cheap (a random process prefix and a counter; uuid4 costs
    a few microseconds per request)."""
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"


def deadline_from(context: grpc.aio.ServicerContext) -> float | None:
    """The call's gRPC deadline on the ``time.monotonic()`` clock."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return time.monotonic() + remaining


def invocation_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata (binary ``-bin`` values left out)."""
    md = context.invocation_metadata() or ()
    return {k: v for k, v in md if isinstance(v, str)}


def _as_serve_error(exc: BaseException) -> ServeError | None:
    """The error to answer with; None for what is not ours to answer (cancellation, an abort the
    servicer already made, interpreter exits)."""
    if isinstance(exc, ServeError):
        return exc
    if not isinstance(exc, Exception) or isinstance(exc, grpc.aio.AbortError):
        return None
    text = quoted(str(exc), 200)  # it may quote what the client sent
    log.error("internal error: %s: %s", type(exc).__name__, text, exc_info=exc)
    return InternalError(f"internal error: {type(exc).__name__}: {text}")


class _Call:
    __slots__ = ("_core", "api", "code", "message", "model", "started")

    def __init__(self, core: InferenceCore, api: str, model: str | None) -> None:
        self._core = core
        self.api = api
        self.model = model
        self.started = time.monotonic()
        self.code = grpc.StatusCode.OK
        self.message = ""

    async def __aenter__(self) -> _Call:
        return self

    def _settle(self, exc: BaseException) -> bool:
        """Map the exception; False when it is not ours to answer."""
        if isinstance(exc, asyncio.CancelledError):
            return False
        error = _as_serve_error(exc)
        if error is None:
            return False
        self.code, self.message = status_for(error), str(error)
        if self.model is not None and not error.recorded:
            self._core.reject(InferRequest(self.model, {}, api=self.api), error, self.started)
        log.debug("%s call failed: %s %s", self.api, self.code.name, self.message)
        return True


class EdgeCall(_Call):
    """A unary call (or a whole stream): an error aborts the RPC."""

    __slots__ = ("_context",)

    def __init__(
        self, core: InferenceCore, context: grpc.aio.ServicerContext, api: str, model: str | None
    ) -> None:
        super().__init__(core, api, model)
        self._context = context

    async def __aenter__(self) -> EdgeCall:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self._settle(exc):
            await self._context.abort(self.code, self.message)


class ItemCall(_Call):
    """One request of a stream: an error is kept in ``code`` / ``message`` for the stream's answer
    and the block is left normally."""

    async def __aenter__(self) -> ItemCall:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return exc is not None and self._settle(exc)


class Edge:
    """Makes the calls servicers run in; one per server."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    def call(self, context: grpc.aio.ServicerContext, api: str, model: str | None = None) -> EdgeCall:
        return EdgeCall(self.core, context, api, model)

    def item(self, api: str, model: str) -> ItemCall:
        return ItemCall(self.core, api, model)
