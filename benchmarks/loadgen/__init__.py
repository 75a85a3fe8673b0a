"""A precise asyncio load generator for ortserve's gRPC APIs (ortserve.v1 Predict and V2 ModelInfer).

Closed loop: ``concurrency`` workers each send the next request as soon as the previous answer
arrives. Open loop: requests start at Poisson arrival times for a given mean rate, whatever the
answers do; latency is measured from the scheduled start, so a generator that falls behind is not
hidden (no coordinated omission), and how far it fell behind is reported (``max_lag_ms``).
Both run for ``duration`` seconds after ``warmup`` and are bounded in time and request count.

Reported per point: throughput (successful requests/s), p50/p90/p99/max latency of successful
requests, errors by gRPC status, the model version/variant that served them, and, when the
server's /metrics URL is given, the server-side batch sizes over the measured window.

    python -m benchmarks.loadgen --target 127.0.0.1:8001 --model digits --concurrency 1,8,32 --duration 10
    python -m benchmarks.loadgen --protocol v2 --rate 200,800 --metrics-url http://127.0.0.1:8002/metrics \\
        --json out.json --csv out.csv

As a library (``send`` is any ``async (worker_index) -> served-by label``)::

    async with AsyncClient(target) as client:
        send = predict_sender(client, "digits", {"input": x})
        result = await measure(lambda: closed_loop(send, 32, 10.0), metrics_url, "digits", warmup=1.0)

Modules: ``results`` (Recorder, LoadResult, timelines, JSON/CSV), ``loops`` (closed and open loop),
``senders`` (prepared v1 and V2 requests), ``server_metrics`` (/metrics scrapes and batch sizes),
``__main__`` (the command line). Each imports only the ones before it in this list, and ortserve.
"""

from __future__ import annotations

from benchmarks.loadgen.loops import Sender, closed_loop, open_loop, run_async
from benchmarks.loadgen.results import (
    SHED,
    LoadResult,
    Recorder,
    error_code,
    timeline,
    write_csv,
    write_json,
)
from benchmarks.loadgen.senders import predict_sender, v2_request, v2_sender, v2_stub
from benchmarks.loadgen.server_metrics import Histograms, batch_stats, measure, scrape_metrics

__all__ = [
    "SHED",
    "Histograms",
    "LoadResult",
    "Recorder",
    "Sender",
    "batch_stats",
    "closed_loop",
    "error_code",
    "measure",
    "open_loop",
    "predict_sender",
    "run_async",
    "scrape_metrics",
    "timeline",
    "v2_request",
    "v2_sender",
    "v2_stub",
    "write_csv",
    "write_json",
]
