"""Admission by memory: the bytes that requests in flight hold, bounded per process.

A request holds its inputs' ``nbytes`` (``ortserve.tensors``: decoded size, wire copy included)
from the moment the core has checked it against the model's signature until it is answered. One
that would take the total over the bound is refused at once with ``Overloaded`` (the edge answers
RESOURCE_EXHAUSTED, which clients may retry after a back-off), before any of it is decoded.

    budget = ByteBudget(256 << 20, metrics)
    with budget.hold(request_nbytes(inputs)):
        ...                                  # decode, queue, run
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ortserve.errors import Overloaded
from ortserve.metrics import Metrics

__all__ = ["ByteBudget"]

_MIB = 1 << 20


class ByteBudget:
    """``limit`` 0: no bound (the bytes are still counted)."""

    def __init__(self, limit: int, metrics: Metrics | None = None) -> None:
        self.limit = limit
        self.held = 0
        self._gauge = metrics.inflight_bytes if metrics is not None else None
        self._refused = metrics.admission_rejected.labels("bytes") if metrics is not None else None

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        if self.limit and self.held + nbytes > self.limit:
            if self._refused is not None:
                self._refused.inc()
            if nbytes > self.limit:
                raise Overloaded(
                    "bytes",
                    f"request too large: its inputs hold {nbytes / _MIB:.1f} MiB once decoded, over this "
                    f"server's bound of {self.limit / _MIB:.1f} MiB for requests in flight",
                )
            raise Overloaded(
                "bytes",
                f"server busy: requests in flight hold {self.held / _MIB:.1f} MiB and this one needs "
                f"{nbytes / _MIB:.1f} MiB more, over the bound of {self.limit / _MIB:.1f} MiB; retry later",
            )
        self.held += nbytes
        self._set()
        try:
            yield
        finally:
            self.held -= nbytes
            self._set()

    def _set(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.held)
