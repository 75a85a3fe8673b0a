"""What every benchmark shares: the benchmark models and their config.toml texts, publishing them
into a model repository, the one raw ONNX Runtime timing loop (the limit a server is held to),
the machine description, and writing a section of benchmarks/RESULTS.md.

    from benchmarks.common import CNN, publish, raw_onnxruntime, small_cnn
    publish(repo, "cnn", 1, small_cnn(), CNN_CONFIG)
    rows_per_s = raw_onnxruntime(repo / "cnn/1/model.onnx", CNN.inputs, [1, 8, 64], seconds=2, threads=2)

This module imports only the installed ``ortserve`` package (and numpy, onnx, onnxruntime), never a
benchmark script nor ``tests``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = [
    "CHANNELS",
    "CNN",
    "CNN_CONFIG",
    "DIGITS",
    "DIGITS_CONFIG",
    "INPUT",
    "RESULTS",
    "THREADS",
    "Inputs",
    "ModelSpec",
    "best_of",
    "cnn_config",
    "command",
    "cpu_ms_per_run",
    "digits_stand_in",
    "load_average",
    "machine",
    "main_thread_cpu_seconds",
    "no_batching",
    "process_cpu_seconds",
    "publish",
    "raw_onnxruntime",
    "section_header",
    "session",
    "small_cnn",
    "tree_cpu_seconds",
    "versions",
    "write_section",
]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"

# -- the benchmark models ------------------------------------------------------------------------
CHANNELS = (128, 256, 512)  # a small CNN on 3x32x32 images: ~320 MFLOP per row, weights ~6 MB
INPUT = (3, 32, 32)
THREADS = 2  # ONNX Runtime threads every server gets for the CNN (the machine has 2 cores)

Inputs = Callable[[int], dict[str, np.ndarray]]  # rows -> one request's (or batch's) inputs


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model as the load sees it: its input, and the budget its config.toml gives it."""

    name: str  # batching on; ``<name>_nobatch`` has batching off
    input: str
    row_shape: tuple[int, ...]
    scale: float  # inputs are uniform in [0, scale)
    threads: int  # ONNX Runtime threads in all (intra-op threads x instances)
    batch_window_s: float  # the config's max_queue_delay_us, in seconds
    max_batch_size: int
    raw_batches: tuple[int, ...]  # batch sizes raw ONNX Runtime is timed at

    def inputs(self, rows: int = 1) -> dict[str, np.ndarray]:
        x = np.random.default_rng(0).random((rows, *self.row_shape)) * self.scale
        return {self.input: x.astype(np.float32)}


DIGITS = ModelSpec("digits", "input", (64,), 16.0, 2, 0.0005, 64, (1, 8, 32, 64))
CNN = ModelSpec("cnn", "x", INPUT, 1.0, THREADS, 0.002, 64, (1, 8, 16, 32, 64))


def small_cnn() -> Any:
    """Three 3x3 conv + ReLU blocks (strides 1, 2, 2), global average pool, a 10-way Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "x", INPUT[0]
    for i, (cout, stride) in enumerate(zip(CHANNELS, (1, 2, 2))):
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node(
                "Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[stride, stride]
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        prev, cin = f"r{i}", cout
    fw = (rng.standard_normal((cin, 10)) / np.sqrt(cin)).astype(np.float32)
    inits += [numpy_helper.from_array(fw, "fw"), numpy_helper.from_array(np.zeros(10, np.float32), "fb")]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *INPUT])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def cnn_config(threads: int) -> str:
    return f"""
max_batch_size = {CNN.max_batch_size}
[batching]
max_queue_delay_us = {round(CNN.batch_window_s * 1e6)}
[runtime]
intra_op_threads = {threads}
instances = 1
allow_spinning = false
"""


CNN_CONFIG = cnn_config(THREADS)


def _digits_config() -> str:
    from ortserve.optimize.demo import CONFIG_TOML

    return CONFIG_TOML


DIGITS_CONFIG = _digits_config()  # the demo's own config.toml: 2 sessions x 1 thread, 500 us window


def no_batching(config: str) -> str:
    """The same config.toml with batching off (the ``<model>_nobatch`` configurations)."""
    return config.replace("[batching]\n", "[batching]\nenabled = false\n", 1)


def digits_stand_in() -> Any:
    """The demo's graph with seeded random weights: the same shapes and cost as the trained one,
    without training it (for smoke runs; full runs train the real demo model)."""
    import onnx

    from ortserve.optimize.demo import to_onnx

    rng = np.random.default_rng(0)
    clf = SimpleNamespace(
        coefs_=[rng.standard_normal((64, 64)) * 0.1, rng.standard_normal((64, 10)) * 0.1],
        intercepts_=[np.zeros(64), np.zeros(10)],
    )
    return onnx.load_from_string(to_onnx(clf))


# -- publishing --------------------------------------------------------------------------------
def publish(repo: Path, name: str, version: int | str, model: Any, config: str | None = None) -> Path:
    """Publish ``model`` (an onnx.ModelProto) as ``<repo>/<name>/<version>`` with its manifest, through the
    repository's own publisher, and write ``config.toml`` (checked first) when given."""
    from ortserve.repository import publish_version, write_model_config

    model_dir = Path(repo) / name
    if config is not None:
        model_dir.mkdir(parents=True, exist_ok=True)
        write_model_config(model_dir, config)
    return publish_version(Path(repo), name, model.SerializeToString(), version=version, replace=True)


# -- raw ONNX Runtime --------------------------------------------------------------------------
def session(path: Path, threads: int, inter_op_threads: int = 0) -> Any:
    """A bare CPU InferenceSession with ``threads`` intra-op threads (0: ONNX Runtime's default)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if inter_op_threads:
        so.inter_op_num_threads = inter_op_threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def raw_onnxruntime(
    path: Path, inputs: Inputs, batch_sizes: Iterable[int], seconds: float, threads: int
) -> dict[int, float]:
    """Rows per second of one bare session at each batch size, back to back for ``seconds`` after
    one warm-up run: the limit a server with the same threads is compared with."""
    sess = session(path, threads)
    out = {}
    for b in batch_sizes:
        feeds = inputs(b)
        sess.run(None, feeds)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            sess.run(None, feeds)
            n += 1
        out[b] = n * b / (time.perf_counter() - start)
    return out


def best_of(runs: Sequence[Mapping[int, float]]) -> dict[int, float]:
    """Per batch size, the best of several raw passes (before and after the servers ran): on a
    machine that is not quiet, one pass can land on a busy moment and flatter every server."""
    return {b: max(run[b] for run in runs) for b in runs[0]}


def cpu_ms_per_run(
    models: Mapping[str, Path], arrays: Mapping[str, np.ndarray], rounds: int = 8
) -> dict[str, float]:
    """Median single-thread CPU time (process time) of one run per model, in ms, the models
    interleaved round by round: the figure a neighbour's load disturbs least on a shared machine.
    Each model is fed the ``arrays`` its inputs name. (Not rows/s: this compares variants of one
    model, so it is not the raw limit of ``raw_onnxruntime``.)"""
    sessions = {}
    for name, path in models.items():
        sess = session(path, threads=1, inter_op_threads=1)
        feed = {i.name: arrays[i.name] for i in sess.get_inputs()}
        sess.run(None, feed)
        sessions[name] = (sess, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, (sess, feed) in sessions.items():
            t = time.process_time()
            sess.run(None, feed)
            times[name].append(time.process_time() - t)
    return {name: float(np.median(ts) * 1000) for name, ts in times.items()}


# -- the machine ---------------------------------------------------------------------------------
def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (threads included): a server's
    own cost, whatever its process model (MLServer's inference workers, ortserve's --workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def process_cpu_seconds(pid: int, stat: str = "stat") -> float:
    """User + system CPU seconds of one process (all its threads, not its children) so far."""
    fields = Path(f"/proc/{pid}/{stat}").read_text().rsplit(")", 1)[1].split()  # past the command name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process's main thread (ortserve's event loop); 0 when gone."""
    try:
        return process_cpu_seconds(pid, f"task/{pid}/stat")
    except OSError:
        return 0.0


def machine() -> str:
    import onnxruntime

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}"
    )


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


# -- RESULTS.md --------------------------------------------------------------------------------
def command(module: str, argv: Sequence[str]) -> str:
    """The command line that reproduces a run, as RESULTS.md quotes it."""
    return " ".join(["python -m", module, *argv])


def section_header(head: str, module: str, argv: Sequence[str], load_average: str) -> list[str]:
    """The first lines of a RESULTS.md section: its head, the machine, the load, the date, the command."""
    return [
        head,
        "",
        f"Machine: {machine()}. Load average before: {load_average} (1, 5, 15 min). Date: {time.strftime('%Y-%m-%d')}.",
        f"Command: `{command(module, argv)}`.",
        "",
    ]


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def write_section(section: str, head: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``head`` in RESULTS.md (or append it), keeping every
    other section."""
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmark results\n\nEvery figure here was measured by a script in benchmarks/; "
        "the command is given with it.\n"
    )
    if head in text:
        before, _, after = text.partition(head)
        nxt = after.find("\n## ")
        text = before + section.rstrip() + "\n" + (after[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
