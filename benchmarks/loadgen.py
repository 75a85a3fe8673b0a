"""A precise asyncio load generator for ortserve's gRPC APIs (ortserve.v1 Predict and V2 ModelInfer).

Closed loop: ``concurrency`` workers each send the next request as soon as the previous answer
arrives. Open loop: requests start at Poisson arrival times for a given mean rate, whatever the
answers do; latency is measured from the scheduled start, so a generator that falls behind is not
hidden (no coordinated omission), and how far it fell behind is reported (``max_lag_ms``).
Both run for ``duration`` seconds after ``warmup`` and are bounded in time and request count.

Reported per point: throughput (successful requests/s), p50/p90/p99/max latency of successful
requests, errors by gRPC status, the model version/variant that served them, and, when the
server's /metrics URL is given, the server-side batch sizes over the measured window.

    python benchmarks/loadgen.py --target 127.0.0.1:8001 --model digits --concurrency 1,8,32 --duration 10
    python benchmarks/loadgen.py --protocol v2 --rate 200,800 --metrics-url http://127.0.0.1:8002/metrics \\
        --json out.json --csv out.csv
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = [
    "LoadResult",
    "Recorder",
    "batch_stats",
    "closed_loop",
    "open_loop",
    "predict_sender",
    "run_async",
    "scrape_metrics",
    "v2_request",
    "v2_sender",
    "write_csv",
    "write_json",
]

# A sender sends one request and returns a label of what served it (version[/variant]) or None.
Sender = Callable[[int], Awaitable[str | None]]
T = TypeVar("T")


@dataclass
class LoadResult:
    concurrency: int  # closed loop: workers; open loop: the most requests in flight at once
    duration_s: float
    requests: int  # successful requests that started in the measured window
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    mode: str = "closed"
    rate_rps: float = 0.0  # open loop: the offered mean rate
    sent: int = 0  # requests started in the measured window, whatever their outcome
    mean_ms: float = 0.0
    max_lag_ms: float = 0.0  # open loop: how late the generator started a request, at worst
    p99_from_send_ms: float = 0.0  # open loop: p99 from the moment the request was actually sent
    served: dict[str, int] = field(default_factory=dict)  # version[/variant] -> successful requests
    mean_batch: float | None = None  # server-side rows per batch in the window (from /metrics)
    batches: int | None = None
    label: str = ""

    def row(self) -> str:
        batch = f", mean batch {self.mean_batch:.1f}" if self.mean_batch else ""
        load = f"rate {self.rate_rps:,.0f}/s" if self.mode == "open" else f"c={self.concurrency}"
        return (
            f"{self.label + ' ' if self.label else ''}{load}: {self.throughput_rps:,.0f} req/s, "
            f"p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
            f"max {self.max_ms:.1f} ms, errors {dict(self.errors) or 0}{batch}"
        )


def error_code(exc: BaseException) -> str:
    """The gRPC status name of a failed call (``RESOURCE_EXHAUSTED``...), else the exception's type."""
    code = getattr(exc, "code", None)
    try:
        status = code() if callable(code) else None
    except TypeError:  # a ``code`` that is not gRPC's
        status = None
    return str(getattr(status, "name", "")) or type(exc).__name__


class Recorder:
    """Every request of a run: scheduled start, actual send and end (perf_counter seconds), status,
    who served it.

    Kept as plain lists (a few floats per request, bounded by ``max_requests``) so that timelines
    (overload, recovery) can be cut from them afterwards."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.sent: list[float] = []
        self.ends: list[float] = []
        self.codes: list[str] = []
        self.served: list[str | None] = []

    def add(self, start: float, end: float, code: str, served: str | None, sent: float | None = None) -> None:
        self.starts.append(start)
        self.sent.append(start if sent is None else sent)
        self.ends.append(end)
        self.codes.append(code)
        self.served.append(served)

    def __len__(self) -> int:
        return len(self.starts)

    def summarize(
        self,
        since: float,
        until: float,
        duration: float,
        *,
        concurrency: int,
        mode: str,
        rate: float = 0.0,
        max_lag: float = 0.0,
        finished_by: float | None = None,
    ) -> LoadResult:
        """Requests that started in [since, until) (and ended by ``finished_by``, when given);
        throughput over ``duration`` seconds."""
        starts = np.asarray(self.starts)
        ends = np.asarray(self.ends)
        codes = np.asarray(self.codes, dtype=object)
        window = (starts >= since) & (starts < until)
        if finished_by is not None:
            window &= ends <= finished_by
        ok = window & (codes == "OK")
        lat = (ends[ok] - starts[ok]) * 1000
        from_send = (ends[ok] - np.asarray(self.sent)[ok]) * 1000
        p50, p90, p99 = np.percentile(lat, [50, 90, 99]) if lat.size else (0.0, 0.0, 0.0)
        errors = Counter(c for c in codes[window & ~ok])
        served = Counter(s for s, good in zip(self.served, ok) if good and s)
        return LoadResult(
            concurrency=concurrency,
            duration_s=duration,
            requests=int(ok.sum()),
            throughput_rps=float(ok.sum()) / duration,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            max_ms=float(lat.max()) if lat.size else 0.0,
            errors=dict(errors),
            mode=mode,
            rate_rps=rate,
            sent=int(window.sum()),
            mean_ms=float(lat.mean()) if lat.size else 0.0,
            max_lag_ms=max_lag * 1000,
            p99_from_send_ms=float(np.percentile(from_send, 99)) if lat.size else 0.0,
            served=dict(served),
        )


async def _call(send: Sender, i: int, start: float, rec: Recorder) -> None:
    sent = time.perf_counter()
    try:
        served = await send(i)
        code = "OK"
    except asyncio.CancelledError:  # by the generator itself (open loop: still in flight after the drain)
        rec.add(start, time.perf_counter(), "CLIENT_CANCELLED", None, sent)
        raise
    except Exception as e:  # any failure is counted by its status code, and the load goes on
        served, code = None, error_code(e)
    rec.add(start, time.perf_counter(), code, served, sent)


async def closed_loop(
    send: Sender,
    concurrency: int,
    duration: float,
    warmup: float = 1.0,
    *,
    max_requests: int = 2_000_000,
    recorder: Recorder | None = None,
) -> LoadResult:
    """Run ``concurrency`` workers calling ``send(worker_index)`` back to back."""
    rec = recorder if recorder is not None else Recorder()
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + duration

    async def worker(i: int) -> None:
        while len(rec) < max_requests:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            await _call(send, i, t0, rec)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    # A closed loop only counts requests that also finished in the window, so that the slow tail
    # of the last round does not stretch the measured time.
    return rec.summarize(measure_from, end, duration, concurrency=concurrency, mode="closed", finished_by=end)


async def open_loop(
    send: Sender,
    rate: float,
    duration: float,
    warmup: float = 1.0,
    *,
    seed: int = 0,
    max_in_flight: int = 10_000,
    max_requests: int = 2_000_000,
    drain_timeout: float = 10.0,
    recorder: Recorder | None = None,
) -> LoadResult:
    """Start requests at Poisson arrival times with mean ``rate`` per second, for ``warmup + duration``
    seconds; then wait up to ``drain_timeout`` for the ones in flight (the rest are cancelled).

    An arrival that finds ``max_in_flight`` requests outstanding is not sent and counts as the
    error ``CLIENT_BACKLOG`` (the generator's own bound, so that it cannot run away)."""
    if rate <= 0:
        raise ValueError(f"rate: {rate}, expected > 0")
    rec = recorder if recorder is not None else Recorder()
    total = warmup + duration
    n = min(max_requests, int(rate * total * 1.5) + 100)
    offsets = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    offsets = offsets[offsets < total]
    start = time.perf_counter()
    tasks: set[asyncio.Task] = set()
    peak = 0
    max_lag = 0.0
    measure_from = start + warmup
    for i, offset in enumerate(offsets.tolist()):
        at = start + offset
        delay = at - time.perf_counter()
        if delay > 0.0005:  # sleep only when it is worth it; late arrivals go at once
            await asyncio.sleep(delay)
        lag = time.perf_counter() - at
        if at >= measure_from and lag > max_lag:
            max_lag = lag
        if len(tasks) >= max_in_flight:
            rec.add(at, at, "CLIENT_BACKLOG", None)
            continue
        task = asyncio.ensure_future(_call(send, i, at, rec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        peak = max(peak, len(tasks))
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return rec.summarize(
        measure_from, start + total, duration, concurrency=peak, mode="open", rate=rate, max_lag=max_lag
    )


# -- senders ----------------------------------------------------------------------------------------
def predict_sender(
    client: Any,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout: float = 30,
    version: str = "",
    targeting_key: str = "",
) -> Sender:
    """One prepared ortserve.v1 Predict request sent over and over (encoded once, like a client cache)."""
    from ortserve.client import build_request

    request = build_request(model, inputs, version=version, targeting_key=targeting_key)

    async def send(_: int) -> str | None:
        resp = await client.stub.Predict(request, timeout=timeout)
        return f"{resp.version}/{resp.variant}" if resp.variant else resp.version

    return send


def v2_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    version: str = "",
    parameters: Mapping[str, int | str] | None = None,
) -> Any:
    """A V2 ``ModelInferRequest`` with the tensors in ``raw_input_contents`` (little-endian, C order).

    ``parameters``: ints go as int64_param (e.g. Triton's ``timeout`` in microseconds), strings as
    string_param."""
    from ortserve._proto.inference import grpc_service_pb2 as pb
    from ortserve.edge.codec import v2_from_numpy

    request = pb.ModelInferRequest(model_name=model, model_version=str(version or ""))
    for key, value in (parameters or {}).items():
        if isinstance(value, str):
            request.parameters[key].string_param = value
        else:
            request.parameters[key].int64_param = int(value)
    for name, array in inputs.items():
        datatype, shape, data = v2_from_numpy(np.asarray(array))
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)
    return request


def v2_stub(channel: Any) -> Any:
    from ortserve._proto.inference import grpc_service_pb2_grpc as pb_grpc

    return pb_grpc.GRPCInferenceServiceStub(channel)


def v2_sender(
    channel: Any,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout: float = 30,
    version: str = "",
    parameters: Mapping[str, int | str] | None = None,
) -> Sender:
    """One prepared V2 ModelInfer request (raw contents) sent over and over, on a grpc.aio channel."""
    stub = v2_stub(channel)
    request = v2_request(model, inputs, version=version, parameters=parameters)

    async def send(_: int) -> str | None:
        resp = await stub.ModelInfer(request, timeout=timeout)
        variant = resp.parameters["variant"].string_param if "variant" in resp.parameters else ""
        return f"{resp.model_version}/{variant}" if variant else resp.model_version

    return send


# -- server-side metrics ----------------------------------------------------------------------------
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
    mean compute seconds (of the batch it ran in), queue seconds and time in the server."""
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


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (a faster generator leaves more CPU to the server)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server dependency except on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- output -----------------------------------------------------------------------------------------
def write_json(results: Sequence[LoadResult], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


def write_csv(results: Sequence[LoadResult], path: Path) -> None:
    names = [f.name for f in fields(LoadResult)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in results:
            row = asdict(r)
            for key in ("errors", "served"):
                row[key] = ";".join(f"{k}={v}" for k, v in sorted(row[key].items()))
            writer.writerow(row)


# -- CLI --------------------------------------------------------------------------------------------
def _numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:8001", help="host:port of the gRPC server")
    p.add_argument(
        "--protocol",
        choices=("v1", "v2"),
        default="v1",
        help="v1: ortserve.v1 Predict; v2: inference.GRPCInferenceService ModelInfer, raw contents",
    )
    p.add_argument("--model", default="digits")
    p.add_argument("--model-version", default="", help="version to ask for (default: the server's choice)")
    p.add_argument("--input", default="input", help="input name")
    p.add_argument("--shape", default="1,64", help="input shape, batch first")
    p.add_argument("--dtype", default="float32")
    p.add_argument(
        "--scale", type=float, default=16.0, help="inputs are uniform in [0, scale) (digits: pixels)"
    )
    p.add_argument("--concurrency", default="32", help="closed loop: comma-separated concurrency sweep")
    p.add_argument(
        "--rate",
        default="",
        help="open loop (Poisson arrivals): comma-separated rates in req/s; replaces the closed loop",
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each point's measurement")
    p.add_argument("--timeout", type=float, default=30.0, help="gRPC deadline per request, seconds")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="bound on requests per point")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals and the input data")
    p.add_argument("--metrics-url", default="", help="the server's Prometheus /metrics URL: adds batch sizes")
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    p.add_argument("--csv", type=Path, help="write the results here as CSV")
    return p


async def run_points(args: argparse.Namespace) -> list[LoadResult]:
    from ortserve.client import AsyncClient

    shape = tuple(int(d) for d in args.shape.split(","))
    x = (np.random.default_rng(args.seed).random(shape) * args.scale).astype(args.dtype)
    inputs = {args.input: x}
    results = []
    async with AsyncClient(args.target) as client:
        if args.protocol == "v1":
            send = predict_sender(
                client, args.model, inputs, timeout=args.timeout, version=args.model_version
            )
        else:
            send = v2_sender(
                client.channel, args.model, inputs, timeout=args.timeout, version=args.model_version
            )
        points: list[tuple[str, float]] = [("open", r) for r in _numbers(args.rate, float)] or [
            ("closed", c) for c in _numbers(args.concurrency, int)
        ]
        for mode, value in points:

            def point(mode: str = mode, value: float = value) -> Awaitable[LoadResult]:
                if mode == "open":
                    return open_loop(
                        send,
                        value,
                        args.duration,
                        args.warmup,
                        seed=args.seed,
                        max_requests=args.max_requests,
                    )
                return closed_loop(
                    send, int(value), args.duration, args.warmup, max_requests=args.max_requests
                )

            result = await measure(point, args.metrics_url or None, args.model, args.warmup)
            result.label = f"{args.protocol} {args.model}"
            print(result.row(), file=sys.stderr, flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = run_async(run_points(args))
    if args.json:
        write_json(results, args.json)
    if args.csv:
        write_csv(results, args.csv)
    if not args.json and not args.csv:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
