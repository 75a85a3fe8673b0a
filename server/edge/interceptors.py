"""The server interceptor chain: the one place that sees every RPC, unary and streaming alike.

Authentication, authorization, audit and tracing plug in here as links::

    class Deny(Interceptor):
        async def enter(self, rpc: Rpc, context) -> None:
            if rpc.group == "flags":
                raise FailedPrecondition("flags are read-only here")   # -> FAILED_PRECONDITION

    server = grpc.aio.server()
    add_InferenceServicer_to_server(servicer, chained(server, [Deny()]))

``enter`` runs inside the RPC's own task before its handler (once per stream, not per message),
with the servicer context at hand (metadata, peer, TLS auth context); a ``ServeError`` it raises
is answered with the status ``ortserve.edge.status`` maps it to, before any request is decoded.
``leave`` runs after the handler with the exception that ended it (None when it returned).
``inspect`` sees each request message before the handler does: once for a unary request, for
each message of a request stream as the handler reads it (a ServeError it raises ends the RPC or
the stream with that status: the handler sees the request stream end there and answers
what came before). Only links that override it are called, so the hot path pays for
it only when a link needs the message (e.g. the model a request names, for model-scoped roles).
``requests`` may wrap the raw request stream of a request-streaming RPC: a ServeError it raises
ends the stream the same way (the drain cuts open streams so, ``ortserve.edge.inflight``).
The chain is built once at start-up and wraps each method's handler as the services are added
(``chained``), not as a ``grpc.aio.ServerInterceptor``: gRPC runs an interceptor through a
coroutine pipeline on every call, ~30 us of CPU per request on a bare server in one (rough) measurement
(benchmarks/RESULTS.md); a wrapped handler costs only what its links do. With no links the
handlers are added unchanged.

The chain also answers a message that does not parse as its protobuf type with INVALID_ARGUMENT
(``InvalidInput``) instead of gRPC's own UNKNOWN: it is the client's mistake.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ortserve.edge.methods import group_of
from ortserve.edge.status import status_for
from ortserve.errors import InvalidInput, ServeError

__all__ = ["Interceptor", "Rpc", "chained", "unary_request"]

_REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar("ortserve_unary_request", default=None)


def unary_request() -> Any:
    """The current call's request message when it is unary (None for a request stream): what
    ``leave`` can read about a call refused in ``enter`` (e.g. the model an audit record names)."""
    return _REQUEST.get()


@dataclass(frozen=True, slots=True)
class Rpc:
    method: str  # /package.Service/Method
    group: str  # ortserve.edge.methods: inference, metadata, model-repository, flags, admin, ...
    streaming: bool  # the request or the response is a stream


class Interceptor:
    """One link of the chain; override what you need."""

    async def enter(self, rpc: Rpc, context: grpc.aio.ServicerContext) -> None:
        """Before the handler. Raise a ServeError to refuse the call."""

    def inspect(self, rpc: Rpc, context: grpc.aio.ServicerContext, request: Any) -> None:
        """Each request message (deserialized, not yet decoded). Raise a ServeError to refuse it."""

    def leave(self, rpc: Rpc, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        """After the handler (also when it raised or was cancelled)."""

    def requests(self, rpc: Rpc, stream: AsyncIterable[Any]) -> AsyncIterable[Any]:
        """The raw request stream of a request-streaming RPC; return it unchanged to leave it alone."""
        return stream


class _Malformed:
    """What the chain's deserializer returns for bytes that do not parse (the handler never sees it)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def refusal(self, rpc: Rpc) -> InvalidInput:
        return InvalidInput(f"the request message of {rpc.method} does not parse: {self.error}")


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:  # protobuf's DecodeError, and whatever a custom deserializer raises
            return _Malformed(e)

    return parse


class _Chain:
    def __init__(self, links: Sequence[Interceptor]) -> None:
        self._links = tuple(links)
        self.inspectors = tuple(x for x in self._links if type(x).inspect is not Interceptor.inspect)
        self.stream_links = tuple(x for x in self._links if type(x).requests is not Interceptor.requests)
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # method -> (handler, wrapped handler)

    def wrapped(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` of ``method`` running the chain (made once per method and handler)."""
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        streaming = handler.request_streaming or handler.response_streaming
        wrapped = _wrap(handler, Rpc(method, group_of(method), streaming), self)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def enter(self, rpc: Rpc, context: grpc.aio.ServicerContext) -> None:
        try:
            for link in self._links:
                await link.enter(rpc, context)
        except ServeError as e:
            self.leave(rpc, context, e)
            await context.abort(status_for(e), str(e))

    def inspect(self, rpc: Rpc, context: grpc.aio.ServicerContext, request: Any) -> None:
        for link in self.inspectors:
            link.inspect(rpc, context, request)

    async def inspected(
        self, rpc: Rpc, context: grpc.aio.ServicerContext, requests: AsyncIterable[Any], admission: _Admission
    ) -> AsyncIterator[Any]:
        """The request stream, up to the first message a link refuses (or that does not parse, or
        where a link's stream wrapper raises): the handler sees the stream end there (and answers
        what it took before), then the RPC ends with the refusal's status."""
        for link in self.stream_links:
            requests = link.requests(rpc, requests)
        try:
            async for request in requests:
                if isinstance(request, _Malformed):
                    raise request.refusal(rpc)
                self.inspect(rpc, context, request)
                yield request
        except ServeError as e:  # kept without its traceback, which holds this frame (and the admission)
            admission.refused = e.with_traceback(None)

    def leave(self, rpc: Rpc, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        for link in reversed(self._links):
            link.leave(rpc, context, error)


class _Admission:
    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused: ServeError | None = None

    def admit(self, chain: _Chain, rpc: Rpc, streaming_request: bool, request: Any, context) -> Any:
        """The request (or request stream) the handler gets, after the inspecting links saw it."""
        if streaming_request:
            return chain.inspected(rpc, context, request, self)
        if isinstance(request, _Malformed):
            raise request.refusal(rpc)
        if chain.inspectors:
            chain.inspect(rpc, context, request)
        return request

    def check(self) -> None:
        """Raise the refusal, if any, letting go of it (raised, it holds this frame: no cycle)."""
        refused, self.refused = self.refused, None
        if refused is not None:
            try:
                raise refused
            finally:
                del refused


def _unpin(abort: BaseException) -> None:
    """Cut what an ``AbortError`` holds: its traceback and the error it was raised while handling.

    grpc.aio keeps the error ``context.abort`` raised on the RPC's state, which every frame it went
    through reaches again through the context it holds: a reference cycle, which only the garbage
    collector frees. It held those frames, and with them the request message and its decoded
    tensors, until the collector's next full pass: a few refused 60 MB requests kept hundreds of
    MB resident for seconds to minutes. gRPC only checks the error's identity."""
    abort.__traceback__ = None
    abort.__context__ = None
    abort.__cause__ = None


def _note_unary(request: Any) -> None:
    _REQUEST.set(None if isinstance(request, _Malformed) else request)


def _note_stream(requests: Any) -> None:
    _REQUEST.set(None)


def _wrap(handler: grpc.RpcMethodHandler, rpc: Rpc, chain: _Chain) -> grpc.RpcMethodHandler:
    """The same handler kind, running the chain around the original behaviour."""
    kind = (
        "stream_stream"
        if handler.request_streaming and handler.response_streaming
        else "stream_unary"
        if handler.request_streaming
        else "unary_stream"
        if handler.response_streaming
        else "unary_unary"
    )
    inner = getattr(handler, kind)
    streaming_request = handler.request_streaming
    note = _note_stream if streaming_request else _note_unary  # what unary_request() gives the links
    behaviour: Callable[[Any, grpc.aio.ServicerContext], Any]
    # Two bodies, alike but for how they hand back what the handler gives: a response stream must
    # be an async generator and a unary answer a coroutine (one shared body would cost every RPC an
    # extra coroutine or generator).
    if inspect.isasyncgenfunction(inner):

        async def generate(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                note(request_or_iterator)
                await chain.enter(rpc, context)
                error: BaseException | None = None
                admission = _Admission()
                try:
                    requests = admission.admit(chain, rpc, streaming_request, request_or_iterator, context)
                    async for response in inner(requests, context):
                        yield response
                    admission.check()
                except ServeError as e:  # refused by an inspecting link
                    error = e
                    await context.abort(status_for(e), str(e))
                except BaseException as e:
                    error = e
                    raise
                finally:
                    chain.leave(rpc, context, error)
                    error = None  # its traceback holds this frame
            except grpc.aio.AbortError as abort:
                _unpin(abort)
                raise  # as it is: a `raise abort` would add this frame (and the request) back

        behaviour = generate
    else:

        async def call(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                note(request_or_iterator)
                await chain.enter(rpc, context)
                error: BaseException | None = None
                admission = _Admission()
                try:
                    requests = admission.admit(chain, rpc, streaming_request, request_or_iterator, context)
                    response = await inner(requests, context)
                    admission.check()
                    return response
                except ServeError as e:  # refused by an inspecting link
                    error = e
                    await context.abort(status_for(e), str(e))
                except BaseException as e:
                    error = e
                    raise
                finally:
                    chain.leave(rpc, context, error)
                    error = None  # its traceback holds this frame
            except grpc.aio.AbortError as abort:
                _unpin(abort)
                raise  # as it is: a `raise abort` would add this frame (and the request) back

        behaviour = call
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(
        behaviour,
        request_deserializer=_lenient(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class _ChainedHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers run the chain."""

    def __init__(self, inner: grpc.GenericRpcHandler, chain: _Chain) -> None:
        self._inner = inner
        self._chain = chain

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        return self._chain.wrapped(handler_call_details.method, handler)


class _Chained:
    """What the services' ``add_*_to_server`` functions are given in place of the server: the
    handlers they add run the chain; anything else goes to the server."""

    def __init__(self, server: grpc.aio.Server, chain: _Chain) -> None:
        self._server = server
        self._chain = chain

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_ChainedHandler(h, self._chain) for h in generic_rpc_handlers)
        )

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        wrapped = {
            name: self._chain.wrapped(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()
        }
        self._server.add_registered_method_handlers(service_name, wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def chained(server: grpc.aio.Server, links: Sequence[Interceptor]) -> Any:
    """``server`` for adding services to: their handlers run ``links`` (``server`` itself when
    there are none). Pass it to every ``add_*_to_server`` of the services to guard."""
    return _Chained(server, _Chain(links)) if links else server
