"""Wiring the monitoring hooks (``ortserve.monitor``) from the settings: which hooks run, the feedback
join the core asks, the tracing seam and the gRPC interceptors tracing adds, the tasks to start and
what to close at shutdown. Tracing is imported only when ``--tracing`` is on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc

from ortserve.core import (
    NO_TRACING,
    CoreHook,
    FeedbackItem,
    FeedbackJoin,
    FeedbackResult,
    ModelVersion,
    Tracing,
)
from ortserve.metrics import Metrics
from ortserve.monitor import DriftMonitor, FeedbackIndex, PayloadLog
from ortserve.ops.settings import Settings

__all__ = ["Monitoring"]

log = logging.getLogger("ortserve")
_MB = 1024 * 1024


OnFeedback = Callable[[FeedbackItem, FeedbackResult], None]


class Monitoring:
    """``on_feedback`` also hears of every joined feedback item (the rollout controller counts them)."""

    def __init__(self, s: Settings, metrics: Metrics, on_feedback: OnFeedback | None = None) -> None:
        self.hooks: list[CoreHook] = []
        self.tracing: Tracing = NO_TRACING
        self.interceptors: list[grpc.aio.ServerInterceptor] = []
        self._provider: Any = None
        if s.tracing:
            try:
                from ortserve.monitor.tracing import enable
            except ImportError as e:
                raise OSError(
                    f"--tracing needs the tracing extra (pip install 'ortserve[tracing]'): {e}"
                ) from e
            self.tracing, hook, self.interceptors, self._provider = enable(s.tracing_endpoint or "")
            self.hooks.append(hook)
        self.payload: PayloadLog | None = None
        if s.payload_log is not None:
            self.payload = PayloadLog(
                s.payload_log,
                metrics,
                sample_rate=s.payload_log_rate,
                max_file_bytes=int(s.payload_log_file_mb * _MB),
                max_bytes=int(s.payload_log_max_mb * _MB),
                lists=s.payload_log_encoding == "lists",
            )
            self.payload.start()  # OSError when the folder cannot be made
            self.hooks.append(self.payload)
        self.drift: DriftMonitor | None = None
        if s.drift_sample_rate > 0:
            self.drift = DriftMonitor(
                metrics,
                sample_rate=s.drift_sample_rate,
                window=s.drift_window,
                min_rows=s.drift_min_rows,
                top_k=s.drift_top_k,
                interval=s.drift_interval,
            )
            self.hooks.append(self.drift)
        self.index: FeedbackIndex | None = None
        if s.feedback_index_size > 0:
            mine = self.payload.feedback if self.payload is not None else None
            listeners = [f for f in (mine, on_feedback) if f is not None]

            def heard(item: FeedbackItem, result: FeedbackResult) -> None:
                for listener in listeners:
                    listener(item, result)

            self.index = FeedbackIndex(
                metrics,
                size=s.feedback_index_size,
                ttl=s.feedback_ttl,
                on_feedback=heard if listeners else None,
            )
            self.hooks.append(self.index)

    @property
    def feedback(self) -> FeedbackJoin | None:
        return self.index

    def start(
        self,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        versions: Callable[..., Sequence[ModelVersion]],
    ) -> None:
        if self.payload is not None:
            self.payload.follow(versions)
        if self.drift is not None:
            spawn(self.drift.run(versions))
        if self.index is not None:
            spawn(self.index.run())

    async def close(self) -> None:
        """After the server stopped: write out the payload log, flush spans."""
        loop = asyncio.get_running_loop()
        if self.payload is not None:
            await loop.run_in_executor(None, self.payload.close)
        if self._provider is not None:
            await loop.run_in_executor(None, self._provider.shutdown)
