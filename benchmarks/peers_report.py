"""bench_peers' rows and its RESULTS.md section: one table per model, the best MLServer setting
marked, and the ratios the performance targets are stated in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import CNN

__all__ = ["HEAD", "Row", "markdown"]

HEAD = "## Peers at their best (bench_peers)"


@dataclass
class Row:
    model: str
    server: str
    settings: str
    throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us_per_request: float | None = None
    # of that, the main thread's: the event loop for ortserve in one process (None: not measured)
    loop_cpu_us_per_request: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    skipped: str = ""
    best: bool = False


def markdown(results: dict[str, Any]) -> str:
    rows = [Row(**r) for r in results["rows"]]
    load = results["load"]
    out = [
        HEAD,
        "",
        f"Measured {results.get('date', '')} on {results['machine']}; command: `{results.get('command', '')}`; "
        f"load average before the run: {results.get('load_average', '?')}. Concurrency {load['concurrency']}, "
        f"{load['duration']:g} s measured per row after {load['warmup']:g} s of warm-up, one-row requests, the same "
        "closed-loop client (benchmarks.loadgen) for every server except the perf_analyzer rows. CPU/request: the "
        "server's process tree (user + system) over the measured window / requests answered.",
        "",
    ]
    for model in dict.fromkeys(r.model for r in rows if r.model != "*"):
        out += [
            f"### {model}",
            "",
            "| server | settings | req/s | p50 ms | p99 ms | server CPU µs/req |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            if r.model != model or r.skipped:
                continue
            cpu = f"{r.cpu_us_per_request:,.0f}" if r.cpu_us_per_request is not None else "–"
            lat = (f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}") if r.p50_ms else ("–", "–")
            name = f"**{r.server}** (best)" if r.best else r.server
            errors = f" ({sum(r.errors.values())} errors: {r.errors})" if r.errors else ""
            out.append(
                f"| {name} | {r.settings}{errors} | {r.throughput_rps:,.0f} | {lat[0]} | {lat[1]} | {cpu} |"
            )
        out.append("")
        out += _ratios(rows, model)
    skipped = [f"- {r.server} ({r.model}) {r.settings}: {r.skipped}" for r in rows if r.skipped]
    if skipped:
        out += ["Skipped:", "", *skipped, ""]
    return "\n".join(out)


def _ratios(rows: list[Row], model: str) -> list[str]:
    best = next((r for r in rows if r.model == model and r.best), None)
    ours = next(
        (r for r in rows if r.model == model and r.server == "ortserve V2 ModelInfer" and not r.skipped), None
    )
    raw = next((r for r in rows if r.model == model and r.server == "raw ONNX Runtime"), None)
    lines = []
    if best and ours:
        cpu = ""
        if best.cpu_us_per_request and ours.cpu_us_per_request:
            cpu = f"; server CPU per request {ours.cpu_us_per_request / best.cpu_us_per_request:.2f}x MLServer's"
        lines.append(
            f"ortserve V2 vs MLServer at its best ({best.settings}): throughput {ours.throughput_rps / best.throughput_rps:.2f}x{cpu}."
        )
    floor = next((r for r in rows if r.model == model and r.server.startswith("grpc.aio floor")), None)
    v1 = next(
        (r for r in rows if r.model == model and r.server == "ortserve Predict (v1)" and not r.skipped), None
    )
    if floor and v1 and floor.cpu_us_per_request and v1.cpu_us_per_request:
        lines.append(
            f"Server CPU per request, ortserve Predict {v1.cpu_us_per_request:,.0f} µs against "
            f"{floor.cpu_us_per_request:,.0f} µs for grpc.aio answering a fixed response: ortserve adds "
            f"{v1.cpu_us_per_request - floor.cpu_us_per_request:,.0f} µs (model run, batching, metrics, "
            "monitoring, routing) to what gRPC itself costs."
        )
        if best and best.cpu_us_per_request:
            lines.append(
                f"Half of MLServer-at-its-best's CPU per request is {best.cpu_us_per_request / 2:,.0f} µs, "
                f"{best.cpu_us_per_request / 2 / floor.cpu_us_per_request:.2f}x the grpc.aio floor."
            )
    if raw and ours and model == CNN.name:  # compute-bound: raw rows/s is the limit a server can approach
        lines.append(
            f"ortserve V2 / raw ONNX Runtime (compute-bound): {ours.throughput_rps / raw.throughput_rps:.2f}x."
        )
    return [*lines, ""] if lines else []
