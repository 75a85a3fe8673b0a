"""The tracing seam: a span per request and a span per batch, linked to the requests it ran.

``NoTracing`` (the default) is a null object: no tracing library is imported and the request path
pays one call that returns a shared do-nothing context. ``ortserve.monitor.tracing`` implements it
with OpenTelemetry (``--tracing``, the ``[tracing]`` extra).

    with tracing.request(request):                 # core.infer: the request's span is current inside
        ...
    batch_tracing = tracing.batcher("digits", "1") # one per loaded version, given to its batcher
    link = batch_tracing.link()                    # at submit, in the request's task
    with batch_tracing.batch([links...], rows):    # around the batch's run
        ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["NO_TRACING", "BatchTracing", "NoTracing", "Tracing"]

_NULL: AbstractContextManager[Any] = contextlib.nullcontext()


class BatchTracing(Protocol):
    def link(self) -> object | None:
        """What a batch span will link to for the request submitting now (None: nothing)."""
        ...

    def batch(self, links: Sequence[object | None], rows: int) -> AbstractContextManager[Any]: ...


class Tracing(Protocol):
    def request(self, request: Any) -> AbstractContextManager[Any]:
        """The span of one ``InferRequest`` (typed Any: ``core.request`` imports the models, which import this)."""
        ...

    def batcher(self, model: str, version: str) -> BatchTracing: ...


class NoTracing:
    """Tracing off: every method answers at once with nothing to do."""

    def request(self, request: Any) -> AbstractContextManager[Any]:
        return _NULL

    def batcher(self, model: str, version: str) -> NoTracing:
        return self

    def link(self) -> None:
        return None

    def batch(self, links: Sequence[object | None], rows: int) -> AbstractContextManager[Any]:
        return _NULL


NO_TRACING = NoTracing()
