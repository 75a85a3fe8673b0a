"""What monitoring adds to a request: the digits demo at c=32 (closed loop, one-row Predict requests)
against servers that differ only in their monitoring settings, in interleaved rounds from the same client.

    .venv/bin/python -m benchmarks.bench_monitoring [--rounds 5 --seconds 5 --write-results]

The figure is the server's CPU time per request (every thread of the process), which a busy
machine disturbs far less than throughput. Arms: ``off`` (drift, feedback index and payload log off), ``drift`` (the default drift sampling),
``payload`` (--payload-log at its default rate), ``feedback`` (the default feedback index),
``defaults`` (what ``ortserve`` runs with: drift and the feedback index), and ``drift-all`` (every request
sampled, for scale). Each arm's figure is its median over the rounds; its cost is against ``off`` measured
in the same rounds. Target: drift and payload logging at their defaults cost at most 2% each.

Separate server processes differ by a few percent from each other whatever their settings (the
security benchmark's TLS arm once measured 6% *below* plaintext), so a second table measures drift
sampling and the payload log in one process: the model's ``config.toml`` switches them between off
(``[monitoring] drift_sample_rate = 0, payload_log_rate = 0``) and their defaults, which the server
takes at its next poll without reloading anything, in alternating windows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from sklearn.datasets import load_digits

from benchmarks.common import command, machine, process_cpu_seconds, write_section
from benchmarks.loadgen.loops import closed_loop
from benchmarks.loadgen.senders import predict_sender
from ortserve.client import AsyncClient
from ortserve.optimize.demo import build
from ortserve.testing import ServerProcess

OFF = ("--drift-sample-rate", "0", "--feedback-index-size", "0")
ARMS: dict[str, tuple[str, ...]] = {
    "off": OFF,
    "drift": ("--feedback-index-size", "0"),
    "payload": (*OFF, "--payload-log", "{payloads}"),
    "feedback": ("--drift-sample-rate", "0"),
    "defaults": (),
    "drift-all": ("--feedback-index-size", "0", "--drift-sample-rate", "1"),
}
HEAD = "## monitoring: per-request cost of drift sampling, payload logging and the feedback index"


async def measure(server: ServerProcess, concurrency: int, seconds: float) -> tuple[float, float]:
    """(throughput, server CPU microseconds per request) of one closed-loop run."""
    x = load_digits().data[:1].astype("float32")
    async with AsyncClient(server.target) as client:
        send = predict_sender(client, "digits", {"input": x})
        cpu0 = process_cpu_seconds(server.proc.pid)
        result = await closed_loop(send, concurrency, seconds, warmup=0.0)
        cpu = process_cpu_seconds(server.proc.pid) - cpu0
    if result.errors:
        raise RuntimeError(f"errors: {result.errors}")
    return result.throughput_rps, cpu / max(result.requests, 1) * 1e6


def toggled(repo: Path, tmp: str, rounds: int, seconds: float, concurrency: int) -> dict[str, list[float]]:
    """Server CPU µs per request in one process with drift sampling and the payload log switched off
    and on (their defaults) through the model's config.toml, in alternating windows."""
    config = repo / "digits" / "config.toml"
    base = config.read_text()
    off = base + "\n[monitoring]\ndrift_sample_rate = 0.0\npayload_log_rate = 0.0\n"
    server = ServerProcess(repo, "--poll-interval", "0.2", "--payload-log", f"{tmp}/payloads-toggled")
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        asyncio.run(measure(server, concurrency, 1.0))
        for r in range(rounds):
            for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                text = off if name == "off" else base
                if text != config.read_text():
                    seen = len(server.logs("[monitoring]"))
                    config.write_text(text)
                    end = time.monotonic() + 10
                    while len(server.logs("[monitoring]")) == seen and time.monotonic() < end:
                        time.sleep(0.05)
                    if len(server.logs("[monitoring]")) == seen:
                        raise RuntimeError("the server did not take the [monitoring] change")
                cpu[name].append(asyncio.run(measure(server, concurrency, seconds))[1])
            print(
                f"toggled round {r + 1}: off {cpu['off'][-1]:.0f} us, on {cpu['on'][-1]:.0f} us", flush=True
            )
    finally:
        config.write_text(base)
        server.stop()
    return cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_monitoring", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per arm and round")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--write-results", action="store_true", help="replace this section of benchmarks/RESULTS.md"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        repo = Path(tmp) / "models"
        build(repo, quiet=True)
        servers = {
            name: ServerProcess(repo, *(a.format(payloads=f"{tmp}/payloads") for a in arm_args))
            for name, arm_args in ARMS.items()
        }
        load_before = os.getloadavg()
        started = time.strftime("%Y-%m-%d")
        rps: dict[str, list[float]] = {name: [] for name in ARMS}
        cpu: dict[str, list[float]] = {name: [] for name in ARMS}
        try:
            for name in ARMS:  # warm-up: sessions, thread pools, the first payload file
                asyncio.run(measure(servers[name], args.concurrency, 1.0))
            for r in range(args.rounds):
                order = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))  # interleaved, both directions
                for name in order:
                    throughput, us = asyncio.run(measure(servers[name], args.concurrency, args.seconds))
                    rps[name].append(throughput)
                    cpu[name].append(us)
                print(f"round {r + 1}: " + ", ".join(f"{n} {cpu[n][-1]:.0f} us" for n in ARMS), flush=True)
        finally:
            for s in servers.values():
                s.stop()
        same = toggled(repo, tmp, args.rounds, args.seconds, args.concurrency)
        load_after = os.getloadavg()
    median = {name: statistics.median(v) for name, v in cpu.items()}
    base = median["off"]
    lines = [
        HEAD,
        "",
        f"{started}, {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        "(the client and the six servers share the machine).",
        f"`{command('benchmarks.bench_monitoring', argv or [])}`: the digits demo, one-row Predict requests, "
        f"closed loop c={args.concurrency}, {args.rounds} interleaved rounds of {args.seconds:g} s per arm; "
        "the figure is the server process's CPU time (all threads) per request, median over the rounds (throughput swings with the neighbours on a shared machine; CPU time per request much less); cost = arm / off - 1; the last column is the median throughput.",
        "",
        "| arm | settings | server CPU per request (median) | rounds (µs) | cost vs off | req/s (median) |",
        "|---|---|---|---|---|---|",
    ]
    for name, arm_args in ARMS.items():
        shown = " ".join(a if "{" not in a else "DIR" for a in arm_args) or "(defaults)"
        cost = median[name] / base - 1
        spread = ", ".join(f"{v:.0f}" for v in cpu[name])
        throughput = statistics.median(rps[name])
        lines.append(
            f"| {name} | `{shown}` | {median[name]:.0f} µs | {spread} | {cost * 100:+.1f}% | {throughput:,.0f} |"
        )
    on, off = statistics.median(same["on"]), statistics.median(same["off"])
    lines += [
        "",
        "One process, drift sampling and the payload log switched through config.toml in alternating windows "
        f"(--payload-log DIR; feedback index at its default in both): off {off:.0f} µs "
        f"({', '.join(f'{v:.0f}' for v in same['off'])}), on at their defaults {on:.0f} µs "
        f"({', '.join(f'{v:.0f}' for v in same['on'])}): **{(on / off - 1) * 100:+.1f}%** for the two together.",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write_results:
        write_section(section, HEAD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
