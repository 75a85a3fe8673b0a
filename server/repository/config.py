"""A model's ``config.toml``: its schema (the dataclasses below, checked by :mod:`ortserve.schema`), reading
and writing it.

Every key is optional::

    max_batch_size = 32            # 0: the model takes no batch dimension (no batching)
    default_version = "1"          # absent: the highest loaded version
    max_input_elements = 1000000   # bound on elements per input tensor
    [[inputs]]                     # absent: taken from the ONNX signature
    name = "input"
    dtype = "float32"
    shape = [64]                   # without the batch dimension when max_batch_size > 0; -1: dynamic
    [batching]
    enabled = true
    max_queue_delay_us = 500
    preferred_batch_sizes = [8, 16]   # run as soon as reached (absent: adaptive sizing)
    max_queue_size = 256
    adaptive = false               # true: wait for more rows only while the measured costs say it pays
    inline_max_us = 200            # batches expected to take less run on the event loop's thread
    [runtime]
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]   # in order; CPU runs what the GPU cannot
    allow_cpu_fallback = false     # true: serve on the CPU when no GPU provider asked for can be created
                                   # (absent: the server's --allow-cpu-fallback; default: refuse the version)
    intra_op_threads = 0           # 0: ONNX Runtime's default
    inter_op_threads = 0
    graph_optimization_level = "all"   # disable | basic | extended | all
    instances = 1                  # sessions per version, each runs one batch at a time
    warmup = true
    allow_spinning = true          # false: ONNX Runtime's threads sleep instead of spinning between runs
    io_binding = false             # true: run through IO binding: inputs copied once into the device's
                                   # buffers, outputs copied back once per batch (any provider)
    cuda_graph_batch_sizes = []    # with io_binding, e.g. [8, 32]: a batch is padded with zero rows to the
                                   # next size (larger ones run as they are), so each size has fixed shapes
                                   # and buffers; on CUDAExecutionProvider each is captured as a CUDA graph
    [runtime.provider_options.CUDAExecutionProvider]   # per provider, over ortserve's defaults:
    device_id = 0                  # CUDA: enable_cuda_graph when cuda_graph_batch_sizes are set; TensorRT:
                                   # engine and timing caches in <version>/trt-cache or under --cache-dir
    [versions]
    policy = "all"                 # or "latest 2", or ["1", "3"]
    [monitoring]                   # taken while serving, without reloading the model
    payload_log_rate = 1.0         # share of its requests in --payload-log (absent: --payload-log-rate; 0: none)
    drift_sample_rate = 0.1        # share compared with the reference (absent: --drift-sample-rate; 0: none)

A bad file is refused with one line, e.g. ``models/digits/config.toml [batching] max_queue_delay_us:
expected an integer >= 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.repository.files import write_atomic
from ortserve.repository.layout import CONFIG, MODEL_FILE  # MODEL_FILE: re-exported for older imports
from ortserve.repository.policy import VersionPolicy
from ortserve.schema import from_table, to_toml, toml_value

__all__ = [
    "MAX_PADDED_SIZES",
    "MODEL_FILE",
    "OPT_LEVELS",
    "BatchingConfig",
    "ConfigError",
    "ModelConfig",
    "MonitoringConfig",
    "RuntimeConfig",
    "TensorConfig",
    "VersionPolicy",
    "config_text",
    "load_model_config",
    "parse_model_config",
    "set_default_version",
    "write_model_config",
]

OPT_LEVELS = ("disable", "basic", "extended", "all")
MAX_PADDED_SIZES = 16  # each padded size keeps its own buffers (and CUDA graph) per session


class ConfigError(ValueError):
    """A config.toml that cannot be read or does not fit the schema (one line: file, key, expected, got,
    e.g. ``models/digits/config.toml [batching] max_queue_delay_us: expected an integer >= 0, got -1``; a
    misspelt key gets a "did you mean"). At start the model is not loaded; while serving, the change is
    refused and the previous config keeps serving.

    What to do: fix the key the message names (the repository page lists every key), save the file; with
    ``--poll-interval`` the server picks it up."""


def _help(text: str, **bounds: Any) -> dict[str, Any]:
    return {"help": text, **bounds}


@dataclass(frozen=True)
class TensorConfig:
    """An ``[[inputs]]`` or ``[[outputs]]`` entry: what the ONNX signature says, narrowed."""

    name: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = field(
        default=None, metadata=_help("without the batch dimension when batching; -1: dynamic", ge=-1)
    )


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = True
    max_queue_delay_us: int = field(default=500, metadata=_help("longest wait for a batch to fill", ge=0))
    preferred_batch_sizes: tuple[int, ...] = field(
        default=(), metadata=_help("sizes to run as soon as reached", ge=1)
    )
    max_queue_size: int = field(default=256, metadata=_help("requests waiting; more are refused", ge=1))
    adaptive: bool = field(
        default=False,
        metadata=_help(
            "wait for more rows only while the measured cost per batch size and the arrival rate say "
            "it raises throughput (within max_queue_delay_us); preferred_batch_sizes turn it off"
        ),
    )
    inline_max_us: int = field(
        default=200,
        metadata=_help(
            "a batch expected to compute in less than this runs on the event loop's thread, not the "
            "thread pool (0: always the pool)",
            ge=0,
            le=10_000,
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred_batch_sizes", tuple(sorted(self.preferred_batch_sizes)))


@dataclass(frozen=True)
class RuntimeConfig:
    providers: tuple[str, ...] = field(
        default=("CPUExecutionProvider",),
        metadata=_help("execution providers, in fallback order", min_items=1),
    )
    # None: the server's --allow-cpu-fallback decides. False: a version whose GPU providers ONNX Runtime
    # cannot create is refused rather than served many times slower on the CPU.
    allow_cpu_fallback: bool | None = None
    intra_op_threads: int = field(default=0, metadata=_help("0: ONNX Runtime's default", ge=0))
    inter_op_threads: int = field(default=0, metadata=_help("0: ONNX Runtime's default", ge=0))
    graph_optimization_level: str = field(
        default="all", metadata=_help("how far ONNX Runtime rewrites the graph", choices=OPT_LEVELS)
    )
    instances: int = field(default=1, metadata=_help("sessions per version, one batch each", ge=1))
    warmup: bool = True
    # ONNX Runtime's worker threads spin while waiting for work: fastest when they have the cores
    # to themselves, but on a small machine they take CPU from the gRPC and batching threads.
    allow_spinning: bool = True
    io_binding: bool = field(
        default=False,
        metadata=_help("run through IO binding: inputs copied once into device buffers, outputs back once"),
    )
    cuda_graph_batch_sizes: tuple[int, ...] = field(
        default=(),
        metadata=_help(
            "pad batches with zero rows to these sizes (a CUDA graph each on CUDA)", ge=1, le=65536
        ),
    )
    provider_options: dict[str, dict[str, str | int | float | bool]] = field(
        default_factory=dict, metadata=_help("options per execution provider, over ortserve's defaults")
    )

    def __post_init__(self) -> None:
        sizes = tuple(sorted(set(self.cuda_graph_batch_sizes)))
        object.__setattr__(self, "cuda_graph_batch_sizes", sizes)
        if sizes and not self.io_binding:
            raise ValueError(
                "cuda_graph_batch_sizes needs io_binding = true (padded batches run on bound buffers)"
            )
        if len(sizes) > MAX_PADDED_SIZES:
            raise ValueError(
                f"cuda_graph_batch_sizes: expected at most {MAX_PADDED_SIZES} sizes, got {len(sizes)}"
            )
        for name in self.provider_options:
            if name not in self.providers:
                raise ValueError(
                    f"provider_options: {name!r} is not one of the providers ({', '.join(self.providers)})"
                )


@dataclass(frozen=True)
class MonitoringConfig:
    """The ``[monitoring]`` table: how much of this model's traffic the server's monitoring keeps. Each
    absent key takes the server's setting; the version that served a request decides for it, and a
    change to this table alone is taken while serving, without reloading the model."""

    payload_log_rate: float | None = field(
        default=None,
        metadata=_help(
            "share of the model's requests answered OK written to --payload-log (absent: the server's "
            "--payload-log-rate; 0: nothing of this model, its feedback items included)",
            ge=0,
            le=1,
        ),
    )
    drift_sample_rate: float | None = field(
        default=None,
        metadata=_help(
            "share of the model's requests answered OK compared with its reference profile (absent: the "
            "server's --drift-sample-rate; 0: no drift for this model; --drift-sample-rate 0 turns drift "
            "off for every model)",
            ge=0,
            le=1,
        ),
    )


def _version_name(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return value
    raise ValueError('expected a version such as "2"')


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(metadata={"table": False, "help": "the model folder's name"})
    max_batch_size: int | None = field(
        default=None, metadata=_help("0: no batch dimension; absent: from the ONNX signature", ge=0)
    )
    default_version: str | None = field(
        default=None, metadata={"parse": _version_name, "help": "absent: the highest loaded version"}
    )
    max_input_elements: int | None = field(default=None, metadata=_help("per input tensor", ge=1))
    inputs: tuple[TensorConfig, ...] | None = None
    outputs: tuple[TensorConfig, ...] | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    versions: VersionPolicy = field(default_factory=VersionPolicy)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    def __post_init__(self) -> None:
        sizes, most = self.runtime.cuda_graph_batch_sizes, self.max_batch_size
        if sizes and most is not None and sizes[-1] > most:
            raise ValueError(
                f"[runtime] cuda_graph_batch_sizes: expected sizes <= max_batch_size ({most}), got {sizes[-1]}"
            )


def parse_model_config(name: str, data: dict[str, Any], where: str = CONFIG) -> ModelConfig:
    """The config of model ``name`` from a parsed table; ConfigError naming ``where``, the key, expected
    and got."""
    return from_table(ModelConfig, data, where, given={"name": name}, error=ConfigError)


def _read(path: Path, text: str, name: str) -> ModelConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    return parse_model_config(name, data, str(path))


def load_model_config(model_dir: Path) -> ModelConfig:
    """``<model_dir>/config.toml``, or the defaults when there is none."""
    path = Path(model_dir) / CONFIG
    if not path.exists():
        return ModelConfig(name=path.parent.name)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from e
    return _read(path, text, path.parent.name)


def config_text(config: ModelConfig, header: str = "") -> str:
    """``config`` as config.toml text: the keys that differ from the defaults, in schema order."""
    return to_toml(config, header)


def write_model_config(model_dir: Path, config: ModelConfig | str, header: str = "") -> Path:
    """Write ``<model_dir>/config.toml`` atomically from a config, or from text (checked first, so a bad
    file never replaces a good one); returns its path."""
    path = Path(model_dir) / CONFIG
    if isinstance(config, str):
        _read(path, config, path.parent.name)
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + config
    else:
        text = config_text(config, header)
    write_atomic(path, text)
    return path


_TABLE = re.compile(r"^\s*\[")
_DEFAULT = re.compile(r"^\s*default_version\s*=")


def set_default_version(model_dir: Path, version: int | str, comment: str = "") -> ModelConfig:
    """Make ``version`` the model's ``default_version``, creating config.toml when missing. The key's line is
    replaced or added (with ``comment`` above it) and the rest of the file kept as it is, comments
    included; a file laid out too unusually for that is written again from its values. Atomic; returns
    the new config. ConfigError if the present file is not a valid config."""
    path = Path(model_dir) / CONFIG
    if not str(version).isdigit():
        raise ValueError(f"bad version {version!r}: versions are numbers such as 2")
    version = str(version)
    current = load_model_config(model_dir)
    wanted = dataclasses.replace(current, default_version=version)
    if not path.exists():
        write_model_config(model_dir, wanted, comment)
        return wanted
    if current == wanted:
        return current
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    top = next((i for i, line in enumerate(lines) if _TABLE.match(line)), len(lines))
    new = [f"# {line}\n" for line in comment.splitlines()] + [f"default_version = {toml_value(version)}\n"]
    at = next((i for i in range(top) if _DEFAULT.match(lines[i])), None)
    text = "".join(lines[:at] + new + lines[at + 1 :] if at is not None else lines[:top] + new + lines[top:])
    try:
        kept = _read(path, text, current.name) == wanted
    except ConfigError:
        kept = False
    write_atomic(path, text if kept else config_text(wanted, comment))
    return wanted
