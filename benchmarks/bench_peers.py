"""Peers at their best, in one table from one run: at one concurrency (32 by default), one-row
requests from the same client (benchmarks.loadgen, closed loop) to every server, with each
server's CPU time per request beside its throughput.

    python -m benchmarks.bench_peers                    # prints the section
    python -m benchmarks.bench_peers --write-results    # + benchmarks/RESULTS.md
    python -m benchmarks.bench_peers --smoke            # seconds: checks the harness

Rows, for the demo MLP (overhead-bound) and the small CNN (compute-bound):
  the grpc.aio floor (benchmarks.peers.floor: Predict answered with a fixed response, digits only);
  raw ONNX Runtime at its best batch size, the same threads (the limit);
  ortserve Predict (v1) and ortserve V2 ModelInfer; ortserve V2 with ``--workers 2`` (digits);
  perf_analyzer (Triton's C++ client, ``tritonclient==2.45.0``) on ortserve V2, an independent check;
  MLServer V2 at every setting of its documented performance knobs: ``parallel_workers`` 0/1/2
  x adaptive batching off / on at the model's window / on at 4x that window (the same total
  ONNX Runtime threads, split between its inference workers), the best marked.
Server CPU per request: user + system seconds of the server's process tree (/proc) over the
measured window, divided by the requests answered in it. On 2 shared cores it is the figure a
client's own cost disturbs least. A configuration that cannot run is listed as skipped, with why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import CNN, CNN_CONFIG, DIGITS, DIGITS_CONFIG, ModelSpec, publish, small_cnn
from benchmarks.loadgen import run_async
from benchmarks.peers_report import HEAD, Row, markdown
from benchmarks.sweep import Load, point


def _ortserve(
    repo: Path,
    specs: list[ModelSpec],
    load: Load,
    rows: list[Row],
    log: Callable[[str], None],
    *,
    workers: bool,
) -> None:
    from ortserve.testing import ServerProcess

    configs: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = [((), "ortserve", ("v1", "v2"))]
    if workers:
        configs.append((("--workers", "2"), "ortserve --workers 2", ("v2",)))
    for extra, label, protocols in configs:
        try:
            server = ServerProcess(repo, *extra)
        except RuntimeError as e:
            rows.append(Row("*", label, "", skipped=str(e).splitlines()[-1][:200]))
            continue
        try:
            for spec in specs:
                if extra and spec is not DIGITS:
                    continue  # every worker would take the CNN's 2 threads: oversubscribed on 2 cores
                for protocol in protocols:
                    name = f"{label} {'Predict (v1)' if protocol == 'v1' else 'V2 ModelInfer'}"
                    log(f"{name}: {spec.name}")
                    row = run_async(point(server.target, protocol, spec.name, spec, load, server.proc.pid))
                    row.server, row.settings = name, _ortserve_settings(spec, extra)
                    rows.append(row)
            if not extra:
                _perf_analyzer(server, specs, load, rows, log)
        finally:
            server.stop()


def _ortserve_settings(spec: ModelSpec, extra: tuple[str, ...]) -> str:
    workers = f", {' '.join(extra)}" if extra else ""
    return f"dynamic batching {spec.max_batch_size} / {spec.batch_window_s * 1e3:g} ms, {spec.threads} ORT threads{workers}"


def _perf_analyzer(
    server: Any, specs: list[ModelSpec], load: Load, rows: list[Row], log: Callable[[str], None]
) -> None:
    from benchmarks.peers.mlserver_peer import PeerUnavailable
    from benchmarks.peers.perf_analyzer import ensure_perf_analyzer, perf_analyzer

    label = "perf_analyzer -> ortserve V2"
    try:
        venv = ensure_perf_analyzer()
    except PeerUnavailable as e:
        rows.append(Row("*", label, "", skipped=str(e)))
        return
    for spec in specs:
        log(f"{label}: {spec.name}")
        shapes = {spec.input: (1, *spec.row_shape)}
        cpu0 = common.tree_cpu_seconds(server.proc.pid)
        before = time.monotonic()
        try:
            point = perf_analyzer(
                venv,
                server.target,
                spec.name,
                shapes,
                concurrency=load.concurrency,
                window_ms=int(load.duration * 1000),
            )
        except PeerUnavailable as e:
            rows.append(Row(spec.name, label, "", skipped=str(e)[:300]))
            continue
        # perf_analyzer measures several windows: CPU over its whole run / requests at its rate
        cpu = common.tree_cpu_seconds(server.proc.pid) - cpu0
        requests = point.throughput_rps * (time.monotonic() - before)
        rows.append(
            Row(
                spec.name,
                label,
                f"perf_analyzer {point.settings}",
                point.throughput_rps,
                point.p50_ms,
                point.p99_ms,
                cpu / requests * 1e6 if requests else None,
            )
        )


MLSERVER_BATCHING = (("off", 0.0), ("on", 1.0), ("on, 4x window", 4.0))


def _floor(load: Load, rows: list[Row], log: Callable[[str], None]) -> None:
    """grpc.aio itself, answering Predict with a fixed response: the least a Python server pays."""
    from benchmarks.peers.floor import FloorServer

    log("grpc.aio floor: digits")
    server = FloorServer()
    try:
        row = run_async(point(server.target, "v1", "digits", DIGITS, load, server.proc.pid))
    finally:
        server.stop()
    row.server, row.settings = "grpc.aio floor (no model)", "uvloop, fixed Predict response, nothing run"
    rows.append(row)


def _mlserver(
    repo: Path, specs: list[ModelSpec], load: Load, rows: list[Row], log: Callable[[str], None]
) -> dict[str, str]:
    from benchmarks.peers.mlserver_peer import MLServerProcess, PeerUnavailable, ensure_venv, venv_versions

    try:
        log("MLServer: preparing benchmarks/.venv-mlserver")
        venv = ensure_venv()
    except PeerUnavailable as e:
        rows.append(Row("*", "MLServer", "", skipped=str(e)[:300]))
        return {}
    for spec in specs:
        for workers in (0, 1, 2):
            threads = max(1, spec.threads // max(1, workers))
            for batching, factor in MLSERVER_BATCHING:
                size = spec.max_batch_size if factor else 1
                window = spec.batch_window_s * factor
                settings = (
                    f"parallel_workers={workers}, adaptive batching {batching}"
                    + (f" ({size} / {window * 1e3:g} ms)" if factor else "")
                    + f", {threads} ORT thread(s) per worker"
                )
                log(f"MLServer {settings}: {spec.name}")
                try:
                    peer = MLServerProcess(
                        venv,
                        spec.name,
                        repo / spec.name / "1" / "model.onnx",
                        max_batch_size=size,
                        max_batch_time_s=window,
                        intra_op_threads=threads,
                        parallel_workers=workers,
                    )
                except PeerUnavailable as e:
                    rows.append(Row(spec.name, "MLServer V2", settings, skipped=str(e).splitlines()[0][:200]))
                    continue
                try:
                    row = run_async(point(peer.target, "v2", spec.name, spec, load, peer.proc.pid))
                finally:
                    peer.stop()
                row.server, row.settings = "MLServer V2", settings
                rows.append(row)
    return venv_versions(venv)


def run(load: Load, *, smoke: bool, mlserver: bool, log: Callable[[str], None]) -> dict[str, Any]:
    specs = [DIGITS] if smoke else [DIGITS, CNN]
    rows: list[Row] = []
    results: dict[str, Any] = {
        "machine": common.machine(),
        "load": asdict(load),
        "versions": common.versions(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        if smoke:
            publish(repo, "digits", 1, common.digits_stand_in(), DIGITS_CONFIG)
        else:
            from ortserve.optimize.demo import build

            build(repo, quiet=True)
        publish(repo, "cnn", 1, small_cnn(), CNN_CONFIG)
        log("raw ONNX Runtime")
        for spec in specs:
            threads = (
                1 if spec is DIGITS else spec.threads
            )  # digits: one of the server's two 1-thread sessions
            per_batch = common.raw_onnxruntime(
                repo / spec.name / "1" / "model.onnx",
                spec.inputs,
                spec.raw_batches,
                load.duration / 4,
                threads=threads,
            )
            best = max(per_batch, key=lambda b: per_batch[b])
            rows.append(
                Row(
                    spec.name,
                    "raw ONNX Runtime",
                    f"batch {best}, {threads} thread(s), in process",
                    per_batch[best],
                )
            )
        _ortserve(repo, specs, load, rows, log, workers=not smoke)
        _floor(load, rows, log)
        if mlserver:
            results["mlserver_versions"] = _mlserver(repo, specs, load, rows, log)
    for spec in specs:
        peers = [r for r in rows if r.model == spec.name and r.server == "MLServer V2" and not r.skipped]
        if peers:
            max(peers, key=lambda r: r.throughput_rps).best = True
    results["rows"] = [asdict(r) for r in rows]
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per row (default 10)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--smoke", action="store_true", help="seconds, untrained digits, no MLServer")
    p.add_argument("--no-mlserver", action="store_true")
    p.add_argument("--write-results", action="store_true", help="update benchmarks/RESULTS.md")
    p.add_argument("--results", type=Path, help="the RESULTS.md to update (implies --write-results)")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args(argv)
    load = Load(args.concurrency, 1.0 if args.smoke else args.duration, 0.3 if args.smoke else args.warmup)

    def log(message: str) -> None:
        print(f"[bench_peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    load_average = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results = run(load, smoke=args.smoke, mlserver=not (args.smoke or args.no_mlserver), log=log)
    results["load_average"] = load_average
    results["date"] = time.strftime("%Y-%m-%d")
    results["command"] = common.command("benchmarks.bench_peers", argv if argv is not None else sys.argv[1:])
    section = markdown(results)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.write_results or args.results:
        common.write_section(section, HEAD, args.results or common.RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
