"""``--tracing``: OpenTelemetry spans for every RPC, every inference request and every batch.

Imported only when tracing is on (the ``[tracing]`` extra: ``pip install 'ortserve[tracing]'``); with it
off the core runs ``ortserve.core.NoTracing`` and nothing here is loaded.

- an RPC span per call (SERVER kind) from OpenTelemetry's gRPC aio server interceptor, which also
  continues a trace the client propagated (``traceparent`` metadata);
- ``ortserve.infer``: one span per inference request, a child of its RPC's span (a ModelStreamInfer
  stream has one RPC span and one ``ortserve.infer`` span per request), with the model, version,
  variant, request id and outcome;
- ``ortserve.batch``: one span per executed batch with the rows and requests it ran, linked to the
  ``ortserve.infer`` span of each of its requests (a batch serves many traces, so it links rather
  than nests).

Spans are exported over OTLP/gRPC (``--tracing-endpoint``, else the standard ``OTEL_EXPORTER_OTLP_*``
variables); sampling follows ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ortserve import __version__
from ortserve.core import Completed, InferRequest
from ortserve.errors import OK

__all__ = ["OtelTracing", "TracingHook", "enable"]


class _Batches:
    def __init__(self, tracer: trace.Tracer, model: str, version: str) -> None:
        self._tracer = tracer
        self._attributes = {"ortserve.model": model, "ortserve.version": version}

    def link(self) -> object | None:
        context = trace.get_current_span().get_span_context()
        return context if context.is_valid else None

    def batch(self, links: Sequence[object | None], rows: int) -> AbstractContextManager[Any]:
        return self._tracer.start_as_current_span(
            "ortserve.batch",
            links=[Link(c) for c in links if c is not None],  # type: ignore[arg-type]
            attributes={
                **self._attributes,
                "ortserve.batch.rows": rows,
                "ortserve.batch.requests": len(links),
            },
        )


class OtelTracing:
    """The core's ``Tracing`` strategy over an OpenTelemetry tracer provider."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("ortserve", __version__, tracer_provider=provider)

    def request(self, request: InferRequest) -> AbstractContextManager[Any]:
        return self._tracer.start_as_current_span(
            "ortserve.infer",
            kind=SpanKind.INTERNAL,
            attributes={
                "ortserve.model": request.model,
                "ortserve.request_id": request.request_id,
                "ortserve.api": request.api,
            },
        )

    def batcher(self, model: str, version: str) -> _Batches:
        return _Batches(self._tracer, model, version)


class TracingHook:
    """A core hook: what the request became (version, variant, outcome) goes on its span."""

    def on_complete(self, event: Completed) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        route = event.route
        span.set_attribute("ortserve.outcome", event.outcome)
        if route is not None:
            span.set_attribute("ortserve.version", route.version.version)
            span.set_attribute("ortserve.variant", route.variant)
        if event.outcome != OK:
            span.set_status(Status(StatusCode.ERROR, str(event.error or event.outcome)))


def enable(endpoint: str = "") -> tuple[OtelTracing, TracingHook, list[grpc.aio.ServerInterceptor], Any]:
    """The pieces ``App`` wires in, and the provider it must shut down (None when one was set before,
    e.g. by a test with an in-memory exporter, or by the application embedding the server)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    provider = trace.get_tracer_provider()
    created = None
    if isinstance(provider, trace.ProxyTracerProvider):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        created = TracerProvider(resource=Resource.create({"service.name": "ortserve"}))
        created.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None)))
        trace.set_tracer_provider(created)
        provider = created
    return OtelTracing(provider), TracingHook(), [aio_server_interceptor(tracer_provider=provider)], created
