"""The full load comparison, measured in one run on one machine: raw ONNX Runtime (the limit),
ortserve with batching off and on (v1 Predict and V2 ModelInfer), ``--workers 1`` and
``--workers 2``, and MLServer with adaptive batching over V2; then an open-loop overload at 3x
ortserve's capacity (benchmarks/overload.py: shedding, memory, p99 of admitted requests,
recovery); with ``--profile``, py-spy's view of where the server's time goes.

    python -m benchmarks.bench_compare                     # prints the section
    python -m benchmarks.bench_compare --write-results     # + benchmarks/RESULTS.md and benchmarks/plots/
    python -m benchmarks.bench_compare --smoke --results /tmp/R.md --plots /tmp/plots   # a few seconds

Run from the repository root. Two models (benchmarks/common.py): the demo ``digits`` MLP
(overhead-bound: the cost is per request) and the small CNN (compute-bound). Every request of the sweeps has one row (the overload's
have 8, so that the model is the bottleneck); each server gets the same thread budget as raw
ONNX Runtime. The load generator (benchmarks/loadgen/) runs in this
process on the same machine, so the figures are ratios from one run, not absolute capacities.
MLServer runs from its own virtual environment (benchmarks/.venv-mlserver, made on first use;
``--no-mlserver`` skips it). A configuration that cannot run (a flag the server does not know, a
peer that cannot be installed) is reported as skipped with the reason, and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import (
    CNN,
    CNN_CONFIG,
    DIGITS,
    DIGITS_CONFIG,
    ModelSpec,
    no_batching,
    publish,
    small_cnn,
)
from benchmarks.compare_plots import plots as draw_plots
from benchmarks.compare_report import HEAD, markdown
from benchmarks.loadgen import run_async
from benchmarks.overload import Overload, overload
from benchmarks.profiling import profile_point
from benchmarks.sweep import Series, sweep

OVERLOAD_FACTOR = 3.0


@dataclass(frozen=True)
class Profile:
    duration: float  # measured seconds per load point
    warmup: float
    concurrencies: tuple[int, ...]
    raw_seconds: float  # per raw ONNX Runtime batch size
    overload_s: float
    capacity_s: float  # closed loop that measures the capacity the overload is a multiple of
    queue_timeout_us: int = 50_000  # the overload's per-request queue limit (V2 ``timeout`` parameter)
    overload_rows: int = 8  # rows per overload request: the model, not the generator, must be the limit


FULL = Profile(5.0, 1.0, (1, 4, 16, 32, 64), 2.0, 10.0, 5.0)
SMOKE = Profile(0.5, 0.2, (1, 8), 0.1, 1.0, 0.5)


# -- the repository ----------------------------------------------------------------------------
def build_repo(repo: Path, smoke: bool) -> None:
    """digits (the trained demo model; smoke: its untrained stand-in) and the CNN, each also as
    ``<name>_nobatch`` with batching off."""
    import onnx

    from ortserve.optimize.demo import build

    if smoke:
        publish(repo, "digits", 1, common.digits_stand_in(), DIGITS_CONFIG)
    else:
        build(repo, quiet=True)
    digits = onnx.load(str(repo / "digits" / "1" / "model.onnx"))
    publish(repo, "digits_nobatch", 1, digits, no_batching(DIGITS_CONFIG))
    publish(repo, "cnn", 1, small_cnn(), CNN_CONFIG)
    publish(repo, "cnn_nobatch", 1, small_cnn(), no_batching(CNN_CONFIG))


def server_accepts(flag: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "ortserve", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return flag in out.stdout


# -- the run ------------------------------------------------------------------------------------
def run(
    profile: Profile,
    *,
    smoke: bool,
    mlserver: bool,
    profiling: bool,
    workers: tuple[int, ...],
    log: Callable[[str], None],
) -> dict:
    from ortserve.testing import ServerProcess

    specs = {"digits": DIGITS, "cnn": CNN}
    series: list[Series] = []
    skipped: list[str] = []
    results: dict[str, Any] = {
        "machine": common.machine(),
        "profile": asdict(profile),
        "versions": common.versions(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        log("building the model repository")
        build_repo(repo, smoke=smoke)

        # Raw ONNX Runtime is measured before and after the servers and the better figure kept: on a
        # machine that is not quiet, one pass can land on a busy moment and flatter every server.
        def raw() -> dict[str, dict[int, float]]:
            log("raw ONNX Runtime")
            # digits: one session with one intra-op thread (the server runs two such sessions).
            return {
                spec.name: common.raw_onnxruntime(
                    repo / spec.name / "1" / "model.onnx",
                    spec.inputs,
                    spec.raw_batches,
                    profile.raw_seconds,
                    threads=1 if spec is DIGITS else spec.threads,
                )
                for spec in specs.values()
            }

        results["raw_runs"] = [raw()]
        load = (profile.concurrencies, profile.duration, profile.warmup)  # every sweep's points

        def drive(server: Any, label: str, protocol: str, suffix: str = "") -> None:
            for spec in specs.values():
                s = Series(label, spec.name)
                series.append(s)
                log(f"{label}: {spec.name}")
                run_async(
                    sweep(s, server.target, protocol, spec.name + suffix, spec, *load, server.metrics_url)
                )

        server = ServerProcess(repo)
        try:
            drive(server, "ortserve v1, batching on", "v1")
            drive(server, "ortserve v1, batching off", "v1", "_nobatch")
            drive(server, "ortserve V2, batching on", "v2")
            if profiling:
                results["profiles"] = []
                for spec in specs.values():
                    log(f"py-spy: ortserve v1, batching on, {spec.name}")
                    results["profiles"].append(profile_point(server, spec, profile.duration))
            log(f"overload: cnn, {profile.overload_rows}-row requests at {OVERLOAD_FACTOR:.0f}x capacity")
            cfg = Overload(
                profile.overload_s,
                profile.capacity_s,
                OVERLOAD_FACTOR,
                profile.queue_timeout_us,
                profile.overload_rows,
            )
            o = results["overload"] = run_async(
                overload(
                    server.target,
                    server.metrics_url,
                    server.proc.pid,
                    CNN.name,
                    CNN.inputs,
                    CNN.max_batch_size,
                    cfg,
                )
            )
            if o["capacity_floored"]:
                log(
                    f"overload: measured capacity {o['capacity_measured_rps']:.1f} req/s is below the floor; "
                    f"the overload assumed {o['capacity_rps']:.1f} req/s (said so in the report)"
                )
        finally:
            server.stop()

        has_workers = server_accepts("--workers")
        for n in workers:
            label = f"ortserve v1, --workers {n}"
            if not has_workers:
                skipped.append(
                    f"{label}: the server does not accept --workers yet (`python -m ortserve --help`)"
                )
                continue
            try:
                server = ServerProcess(repo, "--workers", str(n))
            except RuntimeError as e:
                skipped.append(f"{label}: the server did not start: {str(e).splitlines()[-1][:200]}")
                continue
            if not server.port:
                skipped.append(f"{label}: the server exited: {''.join(server.raw[-3:]).strip()[:300]}")
                server.stop()
                continue
            try:
                drive(server, label, "v1")
            finally:
                server.stop()

        results["raw_runs"].append(raw())
        results["raw"] = {
            model: common.best_of([run[model] for run in results["raw_runs"]]) for model in specs
        }
        if mlserver:
            results["mlserver_versions"] = run_mlserver(repo, specs, profile, series, skipped, log)
    results["series"] = [asdict(s) for s in series]
    results["skipped"] = skipped
    return results


def run_mlserver(
    repo: Path,
    specs: dict[str, ModelSpec],
    profile: Profile,
    series: list[Series],
    skipped: list[str],
    log: Callable[[str], None],
) -> dict[str, str]:
    from benchmarks.peers.mlserver_peer import MLServerProcess, PeerUnavailable, ensure_venv, venv_versions

    label = "MLServer V2, adaptive batching"
    try:
        log("MLServer: preparing benchmarks/.venv-mlserver")
        venv = ensure_venv()
    except PeerUnavailable as e:
        skipped.append(f"{label}: {e}")
        return {}
    for spec in specs.values():
        try:
            peer = MLServerProcess(
                venv,
                spec.name,
                repo / spec.name / "1" / "model.onnx",
                max_batch_size=spec.max_batch_size,
                max_batch_time_s=spec.batch_window_s,
                intra_op_threads=spec.threads,
            )
        except PeerUnavailable as e:
            skipped.append(f"{label} ({spec.name}): {str(e)[:300]}")
            continue
        try:
            s = Series(label, spec.name)
            series.append(s)
            log(f"{label}: {spec.name}")
            run_async(
                sweep(
                    s,
                    peer.target,
                    "v2",
                    spec.name,
                    spec,
                    profile.concurrencies,
                    profile.duration,
                    profile.warmup,
                    None,
                )
            )
        finally:
            peer.stop()
    return venv_versions(venv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="a few seconds: checks the harness end to end")
    p.add_argument("--duration", type=float, help="measured seconds per load point (full run: 5)")
    p.add_argument("--concurrency", help="comma-separated concurrency sweep (full run: 1,4,16,32,64)")
    p.add_argument(
        "--no-mlserver", action="store_true", help="skip the MLServer peer (the smoke run always does)"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also sample the server with py-spy at concurrency 32 (where the time goes)",
    )
    p.add_argument("--workers", default="1,2", help="ortserve --workers configurations ('' for none)")
    p.add_argument(
        "--write-results", action="store_true", help="update benchmarks/RESULTS.md and benchmarks/plots/"
    )
    p.add_argument("--results", type=Path, help="the RESULTS.md to update (implies --write-results)")
    p.add_argument(
        "--plots", type=Path, help="where the PNG plots and figures go (default: benchmarks/plots)"
    )
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    smoke = args.smoke
    if args.duration or args.concurrency:
        profile = dataclasses.replace(
            profile,
            duration=args.duration or profile.duration,
            concurrencies=tuple(int(c) for c in args.concurrency.split(","))
            if args.concurrency
            else profile.concurrencies,
        )
    workers = tuple(int(n) for n in args.workers.split(",") if n.strip())

    def log(message: str) -> None:
        print(f"[bench_compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    started = time.time()
    results = run(
        profile,
        smoke=smoke,
        profiling=args.profile,
        mlserver=not (args.smoke or args.no_mlserver),
        workers=workers,
        log=log,
    )
    results["wall_s"] = time.time() - started
    results["command"] = common.command(
        "benchmarks.bench_compare", argv if argv is not None else sys.argv[1:]
    )
    write = args.write_results or args.results is not None
    plots = args.plots or common.HERE / "plots"
    images = draw_plots(results, plots) if write or args.plots else []
    results_path = args.results or common.RESULTS
    section = markdown(results, images, results_path.parent)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if write:
        (plots / "compare.json").write_text(json.dumps(results, indent=2, default=str))
        common.write_section(section, HEAD, results_path)
        log(f"wrote {results_path} and {len(images)} plot(s) in {plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
