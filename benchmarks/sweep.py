"""One curve of a comparison: a server/configuration/protocol driven over a concurrency sweep of
closed-loop points, each with the server's own batch sizes when its /metrics URL is given."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from benchmarks import common
from benchmarks.common import ModelSpec
from benchmarks.loadgen import LoadResult, closed_loop, measure, predict_sender, v2_sender
from benchmarks.peers_report import Row

__all__ = ["Load", "Series", "point", "sweep"]


@dataclass
class Series:
    """One curve: a server/configuration/protocol driven over the concurrency sweep."""

    label: str
    model: str
    points: list[LoadResult] = field(default_factory=list)
    skipped: str = ""


async def sweep(
    series: Series,
    target: str,
    protocol: str,
    model: str,
    spec: ModelSpec,
    concurrencies: Sequence[int],
    duration: float,
    warmup: float,
    metrics_url: str | None,
) -> None:
    """Append one closed-loop point per concurrency to ``series`` (one-row requests of ``spec``,
    sent to ``model`` over ``protocol``: "v1" Predict or "v2" ModelInfer)."""
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        if protocol == "v1":
            send = predict_sender(SimpleNamespace(stub=_v1_stub(channel)), model, spec.inputs(), timeout=30)
        else:
            send = v2_sender(channel, model, spec.inputs(), timeout=30)
        for c in concurrencies:

            def point(c: int = c) -> Any:
                return closed_loop(send, c, duration, warmup)

            result = await measure(point, metrics_url, model, warmup)
            result.label = series.label
            print(f"  {spec.name}: {result.row()}", file=sys.stderr, flush=True)
            series.points.append(result)


def _v1_stub(channel: Any) -> Any:
    from ortserve._proto.ortserve.v1 import inference_pb2_grpc

    return inference_pb2_grpc.InferenceStub(channel)


@dataclass(frozen=True)
class Load:
    concurrency: int
    duration: float
    warmup: float


async def point(target: str, protocol: str, model: str, spec: ModelSpec, load: Load, pid: int) -> Row:
    """One closed-loop point at ``load.concurrency`` after a warm-up, with the CPU seconds of the
    server's process tree (``pid``) per request answered."""
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        if protocol == "v1":
            from ortserve._proto.ortserve.v1 import inference_pb2_grpc

            client = SimpleNamespace(stub=inference_pb2_grpc.InferenceStub(channel))
            send = predict_sender(client, model, spec.inputs(), timeout=30)
        else:
            send = v2_sender(channel, model, spec.inputs(), timeout=30)
        await closed_loop(send, load.concurrency, load.warmup, 0.0)  # warm-up, not measured
        cpu0, loop0 = common.tree_cpu_seconds(pid), common.main_thread_cpu_seconds(pid)
        result = await closed_loop(send, load.concurrency, load.duration, 0.0)
        cpu1, loop1 = common.tree_cpu_seconds(pid), common.main_thread_cpu_seconds(pid)
    return Row(
        model=spec.name,
        server="",
        settings="",
        throughput_rps=result.throughput_rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        cpu_us_per_request=(cpu1 - cpu0) / result.requests * 1e6 if result.requests else None,
        loop_cpu_us_per_request=(loop1 - loop0) / result.requests * 1e6 if result.requests else None,
        errors=result.errors,
    )
