"""The full load comparison, measured in one run on one machine: raw ONNX Runtime (the limit),
ortserve with batching off and on (v1 Predict and V2 ModelInfer), ``--workers 1`` and
``--workers 2``, and MLServer with adaptive batching over V2; then an open-loop overload at 3x
ortserve's capacity (benchmarks/overload.py: shedding, memory, p99 of admitted requests,
recovery); with ``--profile``, py-spy's view of where the server's time goes.

    python benchmarks/bench_compare.py                     # prints the section
    python benchmarks/bench_compare.py --write-results     # + benchmarks/RESULTS.md and benchmarks/plots/
    python benchmarks/bench_compare.py --smoke --results /tmp/R.md --plots /tmp/plots   # a few seconds

Two models: the demo ``digits`` MLP (overhead-bound: the cost is per request) and the small CNN
of ``bench_server.py`` (compute-bound). Every request of the sweeps has one row (the overload's
have 8, so that the model is the bottleneck); each server gets the same thread budget as raw
ONNX Runtime. The load generator (benchmarks/loadgen.py) runs in this
process on the same machine, so the figures are ratios from one run, not absolute capacities.
MLServer runs from its own virtual environment (benchmarks/.venv-mlserver, made on first use;
``--no-mlserver`` skips it). A configuration that cannot run (a flag the server does not know, a
peer that cannot be installed) is reported as skipped with the reason, and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import compare_report as report  # noqa: E402
from benchmarks.bench_server import CNN_CONFIG, INPUT, THREADS, machine, raw_onnxruntime, small_cnn  # noqa: E402
from benchmarks.loadgen import LoadResult, closed_loop, measure, predict_sender, run_async, v2_sender  # noqa: E402
from benchmarks.overload import Overload, overload  # noqa: E402

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


@dataclass(frozen=True)
class ModelSpec:
    name: str  # batching on; ``<name>_nobatch`` has batching off
    input: str
    row_shape: tuple[int, ...]
    scale: float
    threads: int  # ONNX Runtime threads in all (intra-op threads x instances)
    batch_window_s: float
    max_batch_size: int
    raw_batches: tuple[int, ...]

    def inputs(self, rows: int = 1) -> dict[str, np.ndarray]:
        x = np.random.default_rng(0).random((rows, *self.row_shape)) * self.scale
        return {self.input: x.astype(np.float32)}


DIGITS = ModelSpec("digits", "input", (64,), 16.0, 2, 0.0005, 64, (1, 8, 32, 64))
CNN = ModelSpec("cnn", "x", INPUT, 1.0, THREADS, 0.002, 64, (1, 8, 16, 32, 64))


@dataclass
class Series:
    """One curve: a server/configuration/protocol driven over the concurrency sweep."""

    label: str
    model: str
    points: list[LoadResult] = field(default_factory=list)
    skipped: str = ""


# -- the repository ----------------------------------------------------------------------------
def _no_batching(config: str) -> str:
    return config.replace("[batching]\n", "[batching]\nenabled = false\n", 1)


def digits_stand_in() -> Any:
    """The demo's graph with seeded random weights: the same shapes and cost as the trained one,
    without training it (for the smoke run; the full run trains the real demo model)."""
    import onnx

    from ortserve.optimize.demo import to_onnx

    rng = np.random.default_rng(0)
    clf = SimpleNamespace(
        coefs_=[rng.standard_normal((64, 64)) * 0.1, rng.standard_normal((64, 10)) * 0.1],
        intercepts_=[np.zeros(64), np.zeros(10)],
    )
    return onnx.load_from_string(to_onnx(clf))


def build_repo(repo: Path, smoke: bool) -> None:
    import onnx

    from ortserve.optimize.demo import CONFIG_TOML, build
    from tests.onnx_models import publish

    if smoke:
        publish(repo, "digits", 1, digits_stand_in(), CONFIG_TOML)
    else:
        build(repo, quiet=True)
    digits = onnx.load(str(repo / "digits" / "1" / "model.onnx"))
    publish(repo, "digits_nobatch", 1, digits, _no_batching(CONFIG_TOML))
    publish(repo, "cnn", 1, small_cnn(), CNN_CONFIG)
    publish(repo, "cnn_nobatch", 1, small_cnn(), _no_batching(CNN_CONFIG))


# -- raw ONNX Runtime ---------------------------------------------------------------------------
def raw_digits(path: Path, spec: ModelSpec, seconds: float) -> dict[int, float]:
    """Rows/s of one bare session, one intra-op thread (the server runs two such sessions)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = {}
    for b in spec.raw_batches:
        feeds = spec.inputs(b)
        session.run(None, feeds)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run(None, feeds)
            n += 1
        out[b] = n * b / (time.perf_counter() - start)
    return out


# -- load sweeps --------------------------------------------------------------------------------
async def sweep(
    series: Series,
    target: str,
    protocol: str,
    model: str,
    spec: ModelSpec,
    profile: Profile,
    metrics_url: str | None,
) -> None:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        if protocol == "v1":
            send = predict_sender(SimpleNamespace(stub=_v1_stub(channel)), model, spec.inputs(), timeout=30)
        else:
            send = v2_sender(channel, model, spec.inputs(), timeout=30)
        for c in profile.concurrencies:

            def point(c: int = c) -> Any:
                return closed_loop(send, c, profile.duration, profile.warmup)

            result = await measure(point, metrics_url, model, profile.warmup)
            result.label = series.label
            print(f"  {spec.name}: {result.row()}", file=sys.stderr, flush=True)
            series.points.append(result)


def _v1_stub(channel: Any) -> Any:
    from ortserve._proto.ortserve.v1 import inference_pb2_grpc

    return inference_pb2_grpc.InferenceStub(channel)


def server_accepts(flag: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "ortserve", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return flag in out.stdout


# -- profiles -----------------------------------------------------------------------------------
def py_spy() -> str | None:
    import shutil

    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def profile_point(
    server: Any, spec: ModelSpec, profile: Profile, concurrency: int = 32, top: int = 12
) -> dict[str, Any]:
    """Where the server's time goes at one load point: py-spy samples the server process (and its
    workers) while the load generator runs; returns the functions with the most own time."""
    exe = py_spy()
    if exe is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    seconds = max(1, int(profile.duration))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--subprocesses",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # py-spy attaches
        s = Series("profiled", spec.name)
        prof = dataclasses.replace(profile, duration=seconds + 0.5, warmup=0.0, concurrencies=(concurrency,))
        run_async(sweep(s, server.target, "v1", spec.name, spec, prof, None))
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0 or not out.exists():
            return {"error": f"py-spy failed ({proc.returncode}): {err.strip()[-300:]}"}
        stacks = out.read_text().splitlines()
    own: dict[str, int] = {}
    total = 0
    for line in stacks:
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        leaf = frames.split(";")[-1]
        own[leaf] = own.get(leaf, 0) + int(count)
        total += int(count)
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "model": spec.name,
        "concurrency": concurrency,
        "seconds": seconds,
        "samples": total,
        "throughput_rps": s.points[0].throughput_rps if s.points else 0.0,
        "mode": "GIL held (--gil)",
        "top": [(frame, n / total) for frame, n in ranked] if total else [],
    }


def versions() -> dict[str, str]:
    import grpc
    import onnxruntime

    import ortserve

    return {
        "ortserve": ortserve.__version__,
        "Python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "grpcio": grpc.__version__,
        "numpy": np.__version__,
    }


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
    results: dict[str, Any] = {"machine": machine(), "profile": asdict(profile), "versions": versions()}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        log("building the model repository")
        build_repo(repo, smoke=smoke)

        # Raw ONNX Runtime is measured before and after the servers and the better figure kept: on a
        # machine that is not quiet, one pass can land on a busy moment and flatter every server.
        def raw() -> dict[str, dict[int, float]]:
            log("raw ONNX Runtime")
            return {
                "digits": raw_digits(repo / "digits/1/model.onnx", DIGITS, profile.raw_seconds),
                "cnn": raw_onnxruntime(repo / "cnn/1/model.onnx", list(CNN.raw_batches), profile.raw_seconds),
            }

        results["raw_runs"] = [raw()]

        def drive(server: Any, label: str, protocol: str, suffix: str = "") -> None:
            for spec in specs.values():
                s = Series(label, spec.name)
                series.append(s)
                log(f"{label}: {spec.name}")
                run_async(
                    sweep(s, server.target, protocol, spec.name + suffix, spec, profile, server.metrics_url)
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
                    results["profiles"].append(profile_point(server, spec, profile))
            log(f"overload: cnn, {profile.overload_rows}-row requests at {OVERLOAD_FACTOR:.0f}x capacity")
            cfg = Overload(
                profile.overload_s,
                profile.capacity_s,
                OVERLOAD_FACTOR,
                profile.queue_timeout_us,
                profile.overload_rows,
            )
            results["overload"] = run_async(
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
            model: {b: max(run[model][b] for run in results["raw_runs"]) for b in first}
            for model, first in results["raw_runs"][0].items()
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
            run_async(sweep(s, peer.target, "v2", spec.name, spec, profile, None))
        finally:
            peer.stop()
    return venv_versions(venv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    results["command"] = "python benchmarks/bench_compare.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write = args.write_results or args.results is not None
    plots = args.plots or ROOT / "benchmarks" / "plots"
    images = report.plots(results, plots) if write or args.plots else []
    results_path = args.results or ROOT / "benchmarks" / "RESULTS.md"
    section = report.markdown(results, images, results_path.parent)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if write:
        (plots / "compare.json").write_text(json.dumps(results, indent=2, default=str))
        report.write_section(results_path, section)
        log(f"wrote {results_path} and {len(images)} plot(s) in {plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
