"""What the server itself did during a load point, from its Prometheus /metrics: batches, rows per
batch, compute, queue and in-server time per request (the difference of two scrapes)."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from benchmarks.loadgen.results import LoadResult

__all__ = ["Histograms", "batch_stats", "measure", "scrape_metrics"]

Histograms = dict[str, dict[tuple[tuple[str, str], ...], dict[str, Any]]]


def scrape_metrics(
    url: str,
    names: Sequence[str] = (
        "ortserve_batch_size",
        "ortserve_compute_duration_seconds",
        "ortserve_queue_duration_seconds",
        "ortserve_request_duration_seconds",
    ),
    timeout: float = 5.0,
) -> Histograms:
    """The histograms ``names`` from a Prometheus text endpoint: name -> labels -> {sum, count, buckets}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: Histograms = {name: {} for name in names}
    for family in text_string_to_metric_families(text):
        if family.name not in out:
            continue
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            entry = out[family.name].setdefault(labels, {"sum": 0.0, "count": 0.0, "buckets": {}})
            if s.name.endswith("_bucket"):
                entry["buckets"][s.labels["le"]] = s.value
            elif s.name.endswith("_sum"):
                entry["sum"] = s.value
            elif s.name.endswith("_count"):
                entry["count"] = s.value
    return out


def _delta(before: Histograms, after: Histograms, name: str, model: str | None) -> tuple[float, float]:
    total_sum = total_count = 0.0
    for labels, entry in after.get(name, {}).items():
        if model is not None and dict(labels).get("model") != model:
            continue
        old = before.get(name, {}).get(labels, {"sum": 0.0, "count": 0.0})
        total_sum += entry["sum"] - old["sum"]
        total_count += entry["count"] - old["count"]
    return total_sum, total_count


def batch_stats(before: Histograms, after: Histograms, model: str | None = None) -> dict[str, float]:
    """What the server did between two scrapes: batches, mean rows per batch, and per request the
    mean compute seconds (of the batch it ran in), queue seconds and time in the server (0.0 when
    nothing ran in between)."""
    rows, batches = _delta(before, after, "ortserve_batch_size", model)
    out = {"batches": batches, "mean_batch": rows / batches if batches else 0.0}
    for key, name in (
        ("mean_compute_s", "ortserve_compute_duration_seconds"),
        ("mean_queue_s", "ortserve_queue_duration_seconds"),
        ("mean_server_s", "ortserve_request_duration_seconds"),
    ):
        total, count = _delta(before, after, name, model)
        out[key] = total / count if count else 0.0
    return out


async def measure(
    point: Callable[[], Awaitable[LoadResult]],
    metrics_url: str | None = None,
    model: str | None = None,
    warmup: float = 0.0,
) -> LoadResult:
    """Run one load point; with ``metrics_url``, add the server-side batch sizes of its measured
    window (scraped ``warmup`` seconds after the point starts, and when it ends)."""
    if not metrics_url:
        return await point()

    async def scrape_after(delay: float) -> Histograms:
        await asyncio.sleep(delay)
        return await asyncio.to_thread(scrape_metrics, metrics_url)

    before = asyncio.ensure_future(scrape_after(warmup))
    try:
        result = await point()
    finally:
        if not before.done():  # a point shorter than its warm-up: measure it all
            before.cancel()
    baseline = before.result() if before.done() and not before.cancelled() else {}
    stats = batch_stats(baseline, await asyncio.to_thread(scrape_metrics, metrics_url), model)
    result.batches, result.mean_batch = int(stats["batches"]), stats["mean_batch"]
    return result
