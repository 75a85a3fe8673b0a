"""The model repository: ``<repo>/<model>/config.toml`` and numbered ``<repo>/<model>/<version>/``
folders holding ``model.onnx`` (and ``manifest.json``).

``config.toml`` (every key optional)::

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
    preferred_batch_sizes = [8, 16]
    max_queue_size = 256
    [runtime]
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]   # fallback order
    intra_op_threads = 0           # 0: ONNX Runtime's default
    inter_op_threads = 0
    graph_optimization_level = "all"   # disable | basic | extended | all
    instances = 1                  # sessions per version, each runs one batch at a time
    warmup = true
    allow_spinning = true          # false: ONNX Runtime's threads sleep instead of spinning between runs
    [versions]
    policy = "all"                 # or "latest 2", or ["1", "3"]
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BatchingConfig",
    "ConfigError",
    "ModelConfig",
    "RuntimeConfig",
    "TensorConfig",
    "VersionPolicy",
    "load_model_config",
    "scan_repository",
]

CONFIG = "config.toml"
MODEL_FILE = "model.onnx"
OPT_LEVELS = ("disable", "basic", "extended", "all")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TensorConfig:
    name: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = True
    max_queue_delay_us: int = 500
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 256


@dataclass(frozen=True)
class RuntimeConfig:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization_level: str = "all"
    instances: int = 1
    warmup: bool = True
    # ONNX Runtime's worker threads spin while waiting for work: fastest when they have the cores
    # to themselves, but on a small machine they take CPU from the gRPC and batching threads.
    allow_spinning: bool = True


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "all"  # all | latest | specific
    latest: int = 1
    versions: tuple[str, ...] = ()

    def select(self, available: list[str]) -> list[str]:
        ordered = sorted(available, key=int)
        if self.kind == "latest":
            return ordered[-self.latest :]
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.latest}"
        if self.kind == "specific":
            return "specific " + ",".join(self.versions)
        return "all"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    max_batch_size: int | None = None  # None: decided from the ONNX signature
    default_version: str | None = None
    max_input_elements: int | None = None
    inputs: tuple[TensorConfig, ...] | None = None
    outputs: tuple[TensorConfig, ...] | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    versions: VersionPolicy = field(default_factory=VersionPolicy)


def _check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(allowed))}"
        )


def _int(where: str, value: Any, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _tensors(where: str, items: Any) -> tuple[TensorConfig, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected an array of tables")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}[{i}]: expected a table with a name")
        _check_keys(f"{where}[{i}]", item, {"name", "dtype", "shape"})
        shape = item.get("shape")
        if shape is not None and not all(isinstance(d, int) and d >= -1 for d in shape):
            raise ConfigError(f"{where}[{i}].shape: expected integers >= -1, got {shape!r}")
        out.append(
            TensorConfig(str(item["name"]), item.get("dtype"), tuple(shape) if shape is not None else None)
        )
    return tuple(out)


def _policy(where: str, value: Any) -> VersionPolicy:
    if isinstance(value, list):
        return VersionPolicy("specific", versions=tuple(str(v) for v in value))
    if value == "all":
        return VersionPolicy()
    if isinstance(value, str) and value.startswith("latest"):
        rest = value[len("latest") :].strip() or "1"
        if rest.isdigit() and int(rest) >= 1:
            return VersionPolicy("latest", latest=int(rest))
    raise ConfigError(f'{where}: expected "all", "latest N" or a list of versions, got {value!r}')


def parse_model_config(name: str, data: dict[str, Any], where: str = "config.toml") -> ModelConfig:
    top = {
        "max_batch_size",
        "default_version",
        "max_input_elements",
        "inputs",
        "outputs",
        "batching",
        "runtime",
        "versions",
    }
    _check_keys(where, data, top)
    kwargs: dict[str, Any] = {"name": name}
    if "max_batch_size" in data:
        kwargs["max_batch_size"] = _int(f"{where}: max_batch_size", data["max_batch_size"])
    if "default_version" in data:
        kwargs["default_version"] = str(data["default_version"])
    if "max_input_elements" in data:
        kwargs["max_input_elements"] = _int(f"{where}: max_input_elements", data["max_input_elements"], 1)
    for key in ("inputs", "outputs"):
        if key in data:
            kwargs[key] = _tensors(f"{where}: {key}", data[key])
    b = data.get("batching", {})
    _check_keys(f"{where} [batching]", b, {f.name for f in dataclasses.fields(BatchingConfig)})
    prefs = b.get("preferred_batch_sizes", [])
    if not isinstance(prefs, list):
        raise ConfigError(f"{where} [batching] preferred_batch_sizes: expected a list of integers")
    kwargs["batching"] = BatchingConfig(
        enabled=_bool(f"{where} [batching] enabled", b.get("enabled", True)),
        max_queue_delay_us=_int(f"{where} [batching] max_queue_delay_us", b.get("max_queue_delay_us", 500)),
        preferred_batch_sizes=tuple(
            sorted(_int(f"{where} [batching] preferred_batch_sizes", p, 1) for p in prefs)
        ),
        max_queue_size=_int(f"{where} [batching] max_queue_size", b.get("max_queue_size", 256), 1),
    )
    r = data.get("runtime", {})
    _check_keys(f"{where} [runtime]", r, {f.name for f in dataclasses.fields(RuntimeConfig)})
    providers = r.get("providers", ["CPUExecutionProvider"])
    if not isinstance(providers, list) or not providers or not all(isinstance(p, str) for p in providers):
        raise ConfigError(f"{where} [runtime] providers: expected a non-empty list of provider names")
    level = r.get("graph_optimization_level", "all")
    if level not in OPT_LEVELS:
        raise ConfigError(
            f"{where} [runtime] graph_optimization_level: expected one of {OPT_LEVELS}, got {level!r}"
        )
    kwargs["runtime"] = RuntimeConfig(
        providers=tuple(providers),
        intra_op_threads=_int(f"{where} [runtime] intra_op_threads", r.get("intra_op_threads", 0)),
        inter_op_threads=_int(f"{where} [runtime] inter_op_threads", r.get("inter_op_threads", 0)),
        graph_optimization_level=level,
        instances=_int(f"{where} [runtime] instances", r.get("instances", 1), 1),
        warmup=_bool(f"{where} [runtime] warmup", r.get("warmup", True)),
        allow_spinning=_bool(f"{where} [runtime] allow_spinning", r.get("allow_spinning", True)),
    )
    v = data.get("versions", {})
    _check_keys(f"{where} [versions]", v, {"policy"})
    kwargs["versions"] = _policy(f"{where} [versions] policy", v.get("policy", "all"))
    return ModelConfig(**kwargs)


def load_model_config(model_dir: Path) -> ModelConfig:
    path = model_dir / CONFIG
    if not path.exists():
        return ModelConfig(name=model_dir.name)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e
    return parse_model_config(model_dir.name, data, str(path))


@dataclass
class ModelEntry:
    """One model folder as found on disk: its config (or the error reading it) and version folders."""

    name: str
    path: Path
    config: ModelConfig | None
    error: str | None
    versions: dict[str, Path]

    def wanted(self) -> dict[str, Path]:
        if self.config is None:
            return {}
        return {v: self.versions[v] for v in self.config.versions.select(list(self.versions))}


def scan_repository(root: Path) -> dict[str, ModelEntry]:
    """Find every model folder (one holding numbered version folders with model.onnx)."""
    found: dict[str, ModelEntry] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = {
            v.name: v
            for v in model_dir.iterdir()
            if v.is_dir() and v.name.isdigit() and (v / MODEL_FILE).is_file()
        }
        if not versions and not (model_dir / CONFIG).exists():
            continue
        try:
            config, error = load_model_config(model_dir), None
        except ConfigError as e:
            config, error = None, str(e)
        found[model_dir.name] = ModelEntry(model_dir.name, model_dir, config, error, versions)
    return found
