"""A precise asyncio load generator for ortserve's gRPC APIs.

Closed loop: ``concurrency`` workers each send the next request as soon as the previous
answer arrives, for ``duration`` seconds after a warm-up. Latency is measured per request
with ``time.perf_counter``; errors are counted by gRPC status.

    python benchmarks/loadgen.py --target 127.0.0.1:8001 --model digits --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["LoadResult", "closed_loop", "predict_sender"]


@dataclass
class LoadResult:
    concurrency: int
    duration_s: float
    requests: int
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        return (f"{self.throughput_rps:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, "
                f"p99 {self.p99_ms:.2f} ms, errors {sum(self.errors.values())}")


def summarize(concurrency: int, elapsed: float, latencies: list[float], errors: Counter) -> LoadResult:
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return LoadResult(concurrency, elapsed, len(latencies), len(latencies) / elapsed, float(p50), float(p90),
                      float(p99), float(lat.max()), dict(errors))


async def closed_loop(send: Callable[[int], Awaitable[None]], concurrency: int, duration: float,
                      warmup: float = 1.0) -> LoadResult:
    """Run ``concurrency`` workers calling ``send(worker_index)`` back to back."""
    latencies: list[float] = []
    errors: Counter = Counter()
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + duration

    async def worker(i: int) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await send(i)
                ok = True
            except Exception as e:  # count by status code, keep going
                code = getattr(e, "code", None)
                errors[code().name if callable(code) else type(e).__name__] += 1
                ok = False
            t1 = time.perf_counter()
            if ok and t0 >= measure_from and t1 <= end:
                latencies.append(t1 - t0)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return summarize(concurrency, duration, latencies, errors)


def predict_sender(client, model: str, inputs: dict[str, np.ndarray]) -> Callable[[int], Awaitable[None]]:
    """One prepared ortserve.v1 Predict request sent over and over (encoding once, like a real client cache)."""
    from server.client import build_request

    request = build_request(model, inputs)

    async def send(_: int) -> None:
        await client.stub.Predict(request, timeout=30)

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:8001")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--input", default="input", help="input name")
    parser.add_argument("--shape", default="1,64", help="input shape, batch first")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    from server.client import AsyncClient

    shape = tuple(int(d) for d in args.shape.split(","))
    x = np.random.default_rng(0).random(shape).astype(args.dtype)

    async def run() -> LoadResult:
        async with AsyncClient(args.target) as c:
            return await closed_loop(predict_sender(c, args.model, {args.input: x}), args.concurrency, args.duration,
                                     args.warmup)

    result = asyncio.run(run())
    print(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
