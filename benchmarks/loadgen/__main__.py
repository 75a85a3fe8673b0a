"""The load generator's command line: ``python -m benchmarks.loadgen --help`` (run from the repo root)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks import loadgen
from benchmarks.loadgen import (
    LoadResult,
    closed_loop,
    measure,
    open_loop,
    predict_sender,
    run_async,
    v2_sender,
    write_csv,
    write_json,
)


def _numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description=loadgen.__doc__.split("\n\nAs a library")[0] if loadgen.__doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rates, workers = _numbers(args.rate, float), _numbers(args.concurrency, int)
    except ValueError as e:
        parser.error(f"--rate/--concurrency: {e}")
    if any(r <= 0 for r in rates) or (not rates and any(c <= 0 for c in workers)):
        parser.error("rates and concurrencies must be > 0")
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
