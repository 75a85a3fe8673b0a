"""The GPU check: ortserve on the CUDA execution provider against raw ONNX Runtime on the same GPU, one
table. ``benchmarks/gpu_check.sh`` makes its environment (onnxruntime-gpu and the CUDA libraries the
GPU image pins) and runs it; on its own: ``python -m benchmarks.gpu_check``.

Models: the CNN of ``benchmarks.common`` and all-MiniLM-L6-v2 (``benchmarks.minilm_onnx``, sequence 128;
skipped with the reason when its weights cannot be installed), each in FP32 and as the FP16 variant
``ortserve-optimize --quantize fp16`` publishes. Paths served, one server for all:
``session.run`` (the default), ``io_binding = true``, and io_binding with ``cuda_graph_batch_sizes``
(CUDA graphs; FP16 is served this way only). Every path's answers are first compared with ONNX Runtime
on the CPU at several batch sizes (twice per padded size, with different data: a replayed graph that
read stale buffers would fail), then loaded with one-row requests and with multi-row requests.
Raw ONNX Runtime on the GPU is timed at several batch sizes with ``session.run``, and at its best batch
through the same IO binding and CUDA graph the server uses. Exit status 2 when no usable GPU, 1 when a
path answers differently from the CPU beyond float tolerance (1e-2; FP16 5e-2).

    python -m benchmarks.gpu_check [--duration 4] [--models cnn,minilm] [--write-results]
    python -m benchmarks.gpu_check --providers CPUExecutionProvider --smoke   # the plumbing, on a CPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common, minilm_onnx
from benchmarks.sweep import Load, point

HEAD = "## GPU check (gpu_check)"
SIZES = [1, 2, 4, 8, 16, 32, 64]
PATHS = {
    "session.run": "",
    "io_binding": "io_binding = true\n",
    "io_binding + CUDA graphs": f"io_binding = true\ncuda_graph_batch_sizes = {SIZES}\n",
}
FP16_PATH = "io_binding + CUDA graphs"


@dataclass
class Spec:
    """A model as the load sees it (the shape ``benchmarks.sweep.point`` asks for)."""

    name: str
    rows: int = 1
    seq: int = 128

    def inputs(self, rows: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        n = rows or self.rows
        if self.name.startswith("minilm"):
            return minilm_onnx.inputs(n, self.seq, seed)
        x = np.random.default_rng(seed).random((n, *common.INPUT))
        return {common.CNN.input: x.astype(np.float32)}


@dataclass
class Line:
    model: str
    path: str
    load: str
    rows_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us_per_request: float | None = None
    vs_raw: float | None = None
    max_abs_diff: float | None = None
    note: str = ""


def check_gpu(providers: list[str]) -> str:
    """'' when every accelerator asked for really runs a session here, else why not."""
    import onnxruntime as ort

    from ortserve.core.providers import preload_gpu_libraries

    wanted = [p for p in providers if p != "CPUExecutionProvider"]
    if not wanted:
        return ""
    missing = [p for p in wanted if p not in ort.get_available_providers()]
    if missing:
        return f"{', '.join(missing)} not in this onnxruntime ({ort.__version__}: {ort.get_available_providers()})"
    preload_gpu_libraries(providers)
    model = common.small_cnn().SerializeToString()
    try:
        used = ort.InferenceSession(model, providers=providers).get_providers()
    except Exception as e:
        return f"ONNX Runtime could not create {wanted[0]}: {e}"
    return "" if wanted[0] in used else f"{wanted[0]} could not be created (no GPU visible or driver too old)"


def session(path: Path, providers: list[str]) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=providers)


def timed(run: Any, seconds: float) -> float:
    """Runs per second of ``run`` back to back for ``seconds`` after one warm-up run."""
    run()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        n += 1
    return n / (time.perf_counter() - start)


def raw(path: Path, spec: Spec, providers: list[str], batches: list[int], seconds: float) -> dict[str, Any]:
    """Rows/s of ``session.run`` at each batch size, and at the best one through IO binding with a
    CUDA graph (the runner the server uses), on a session of its own."""
    from ortserve.core.binding import BoundRunner, Device

    sess = session(path, providers)
    names = [o.name for o in sess.get_outputs()]
    by_batch = {b: b * timed(lambda f=spec.inputs(b): sess.run(names, f), seconds) for b in batches}
    best = max(by_batch, key=lambda b: by_batch[b])
    on_gpu = "CUDAExecutionProvider" in providers
    opts = [("CUDAExecutionProvider", {"enable_cuda_graph": "1"})] if on_gpu else []
    try:
        bound_sess = session(path, [*opts, *[p for p in providers if p != "CUDAExecutionProvider"]])
    except Exception as e:  # CUDA graphs refused (a node off the CUDA provider)
        return {"by_batch": by_batch, "best": best, "bound_graph": None, "note": str(e)[-300:]}
    runner = BoundRunner(bound_sess, names, Device("cuda" if on_gpu else "cpu"), [best], graphs=on_gpu)
    feeds = spec.inputs(best)
    runner.run(feeds)  # the regular run before capture
    bound = best * timed(lambda: runner.run(feeds), seconds)
    return {"by_batch": by_batch, "best": best, "bound_graph": bound, "note": ""}


def reference(path: Path, spec: Spec) -> list[tuple[dict, np.ndarray]]:
    """Requests of several batch sizes, two of each with different data, and what ONNX Runtime on the
    CPU answers to them."""
    sess = session(path, ["CPUExecutionProvider"])
    out = []
    for rows in (1, 3, 8, 33, 64):
        for seed in (rows, rows + 100):
            feeds = spec.inputs(rows, seed)
            out.append((feeds, sess.run(None, feeds)[0]))
    return out


def max_diff(client: Any, model: str, ref: list[tuple[dict, np.ndarray]]) -> float:
    """The largest difference between the served answers and the CPU's (a wrong shape: infinite)."""
    worst = 0.0
    for feeds, want in ref:
        got = next(iter(client.predict(model, feeds, timeout=60).outputs.values()))
        if got.shape != want.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))
    return worst


def build(work: Path, models: list[str], smoke: bool) -> tuple[dict[str, Path], list[str]]:
    """The ONNX files (fp32 and fp16 of each model) and the notes of what was skipped."""
    import onnx

    shutil.rmtree(work, ignore_errors=True)  # versions and models of an earlier run would be served too
    work.mkdir(parents=True)
    files, notes = {}, []
    if "cnn" in models:
        files["cnn"] = work / "cnn.onnx"
        onnx.save(common.small_cnn(), str(files["cnn"]))
    if "minilm" in models:
        why = minilm_onnx.weights_available()
        if why:
            notes.append(f"MiniLM skipped: {why}")
        else:
            files["minilm"] = minilm_onnx.build(work / "minilm.onnx", seq=32 if smoke else 128)
    for name in list(files):
        out = work / f"fp16-{name}"
        cmd = [sys.executable, "-m", "ortserve.optimize", str(files[name]), "--quantize", "fp16", "--no-fp32",
               "--repo", str(out / "repo"), "--name", name, "--batch-sizes", "8", "--bench-seconds", "0.2",
               "--samples", "32", "--out", str(out / "report"), "--quiet"]  # fmt: skip
        if name == "minilm":  # token ids in the vocabulary, not random integers
            np.savez(work / "tokens.npz", **minilm_onnx.inputs(32, 32 if smoke else 128, seed=1))
            cmd += ["--data", str(work / "tokens.npz")]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        made = sorted((out / "repo" / name).glob("*/model.onnx"))
        if done.returncode != 0 or not made:
            notes.append(
                f"{name} fp16 skipped: ortserve-optimize exited {done.returncode}: {done.stderr[-300:]}"
            )
        else:
            files[f"{name}_fp16"] = made[-1]
    return files, notes


def config(path_keys: str, providers: list[str]) -> str:
    listed = ", ".join(f'"{p}"' for p in providers)
    return (
        f"max_batch_size = 64\n[batching]\nmax_queue_delay_us = 2000\n"
        f"[runtime]\nproviders = [{listed}]\n{path_keys}"
    )


async def loads(target: str, name: str, spec: Spec, load: Load, rows: int, pid: int) -> list[Any]:
    one = await point(target, "v1", name, Spec(spec.name, 1, spec.seq), load, pid)
    many = await point(target, "v1", name, Spec(spec.name, rows, spec.seq), load, pid)
    return [one, many]


def run(a: argparse.Namespace) -> dict[str, Any]:
    import onnx

    from ortserve.client import Client
    from ortserve.testing import ServerProcess

    providers = a.providers.split(",")
    work = Path(a.work)
    files, notes = build(work, a.models.split(","), a.smoke)
    batches = [1, 8] if a.smoke else [1, 8, 32, 64]  # up to the served max_batch_size
    seq = 32 if a.smoke else 128
    raws = {m: raw(p, Spec(m, seq=seq), providers, batches, a.raw_seconds) for m, p in files.items()}
    repo = work / "repo"
    served: dict[str, tuple[str, str]] = {}
    for model, path in files.items():
        for label, keys in PATHS.items():
            if model.endswith("_fp16") and label != FP16_PATH:
                continue
            name = f"{model}_{len(served)}"
            common.publish(repo, name, 1, onnx.load(str(path)), config(keys, providers))
            served[name] = (model, label)
    load = Load(a.concurrency, a.duration, a.warmup)
    lines: list[Line] = []
    server = ServerProcess(repo, ready_timeout=600)
    try:
        refused = {
            e.get("model"): e.get("message", "") for e in server.lines if e.get("event") == "version_refused"
        }
        # FP16 variants are compared with the FP32 model: their difference is FP16's error.
        refs = {m: reference(files[m.removesuffix("_fp16")], Spec(m, seq=seq)) for m in files}
        for name, (model, label) in served.items():
            if name in refused:
                lines.append(Line(model, label, "-", note="refused: " + refused[name][-300:]))
                continue
            with Client(server.target) as c:
                diff = max_diff(c, name, refs[model])
            wrong = diff > (5e-2 if model.endswith("_fp16") else 1e-2)  # stale buffers are off by far more
            spec = Spec(model, seq=seq)
            for tag, row in zip(
                ("1 row", f"{a.rows} rows"),
                asyncio.run(loads(server.target, name, spec, load, a.rows, server.proc.pid)),
            ):
                per = 1 if tag == "1 row" else a.rows
                rps = row.throughput_rps * per
                best = raws[model]["by_batch"][raws[model]["best"]]
                lines.append(Line(model, label, f"{tag}, c={a.concurrency}", rps, row.p50_ms, row.p99_ms,
                                  row.cpu_us_per_request, rps / best if best else None, diff,
                                  ("WRONG answers; " if wrong else "") + (f"errors {row.errors}" if row.errors else "")))  # fmt: skip
        graphs = [e for e in server.lines if e.get("event") == "io_binding"]
    finally:
        server.stop()
    return {"providers": providers, "machine": common.machine(), "gpu": gpu_name(), "notes": notes,
            "raw": {m: {**r, "by_batch": {str(b): v for b, v in r["by_batch"].items()}} for m, r in raws.items()},
            "lines": [asdict(x) for x in lines], "io_binding_logs": [g.get("message", "") for g in graphs],
            "load": asdict(load), "rows": a.rows, "date": time.strftime("%Y-%m-%d"),
            "load_average": os.getloadavg()[0]}  # fmt: skip


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    except OSError:
        return "no nvidia-smi"
    return out.stdout.strip() or "no GPU listed"


def cell(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def table(r: dict[str, Any]) -> str:
    out = [HEAD, "", f"Measured {r['date']} on {r['gpu']} ({r['machine']}), providers {', '.join(r['providers'])}; "
           f"closed loop, {r['load']['duration']:g} s after {r['load']['warmup']:g} s of warm-up; load average "
           f"{r['load_average']:.2f}. vs raw: rows/s over raw `session.run` at its best batch.", "",
           "| model | path | load | rows/s | p50 ms | p99 ms | server CPU µs/req | vs raw | max abs diff vs CPU | note |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    bound = "raw io_binding + CUDA graph" if "CUDAExecutionProvider" in r["providers"] else "raw io_binding"
    for m, raw_ in r["raw"].items():
        best = raw_["best"]
        out.append(f"| {m} | raw session.run | batch {best} | {raw_['by_batch'][str(best)]:,.0f} | | | | 1.00 | | "
                   + ", ".join(f"b{b}: {v:,.0f}" for b, v in raw_["by_batch"].items()) + " |")  # fmt: skip
        if raw_["bound_graph"] is None:
            out.append(f"| {m} | {bound} | batch {best} | | | | | | | refused: {cell(raw_['note'])} |")
            continue
        out.append(f"| {m} | {bound} | batch {best} | {raw_['bound_graph']:,.0f} | | | | "
                   f"{raw_['bound_graph'] / raw_['by_batch'][str(best)]:.2f} | | |")  # fmt: skip

    def f(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for x in r["lines"]:
        out.append(f"| {x['model']} | {x['path']} | {x['load']} | {f(x['rows_per_s'], ',.0f')} | {f(x['p50_ms'], '.2f')} | "
                   f"{f(x['p99_ms'], '.2f')} | {f(x['cpu_us_per_request'], '.0f')} | {f(x['vs_raw'], '.2f')} | "
                   f"{f(x['max_abs_diff'], '.2e')} | {cell(x['note'])} |")  # fmt: skip
    out += ["", *[f"- {n}" for n in r["notes"]], *[f"- server: {m}" for m in r["io_binding_logs"]]]
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--models", default="cnn,minilm")
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--raw-seconds", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rows", type=int, default=16, help="rows per request of the multi-row load")
    p.add_argument("--work", default="benchmarks/out/gpu-check")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--write-results", action="store_true", help="put the table into benchmarks/RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="tiny durations and sizes (checks the plumbing)")
    a = p.parse_args()
    if a.smoke:
        a.duration, a.warmup, a.raw_seconds, a.concurrency, a.rows = 0.3, 0.2, 0.1, 4, 3
    why = check_gpu(a.providers.split(","))
    if why:
        print(f"gpu_check: no usable GPU: {why}", file=sys.stderr)
        return 2
    results = run(a)
    text = table(results)
    print(text)
    wrong = sorted({f"{x['model']} ({x['path']})" for x in results["lines"] if "WRONG" in x["note"]})
    if wrong:
        print(
            f"gpu_check: answers differ from the CPU's beyond tolerance: {', '.join(wrong)}", file=sys.stderr
        )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    if a.write_results:
        common.write_section(text, HEAD)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
