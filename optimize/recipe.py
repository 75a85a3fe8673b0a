"""The recipe: which variants to build (each an ordered list of steps), with data, gates and benchmark settings.

A recipe is TOML; paths in it are relative to the recipe file. ``ortserve-optimize --write-recipe FILE`` writes the run
the flags describe, so the common case can grow into a recipe::

    model = "model.onnx"
    name = "digits"
    repo = "models"
    [data]
    eval = "eval.npz"            # arrays named like the inputs, optional `labels`
    [gates]
    max_accuracy_drop = 1.0
    min_cosine = 0.99
    [benchmark]
    batch_sizes = [1, 8, 32]
    [[variants]]
    name = "int8-dynamic"
    steps = [{step = "graph-optimize"}, {step = "quantize-dynamic", per_channel = true}]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.gates import Gates
from ortserve.optimize.specs import TensorSpec, check_dtype
from ortserve.optimize.steps import make_config

__all__ = ["Recipe", "VariantSpec", "load_recipe", "recipe_to_toml"]


@dataclass
class VariantSpec:
    name: str
    steps: list[tuple[str, dict[str, Any]]]
    gates: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    model: str | None = None
    weights: str | None = None
    name: str | None = None
    repo: str | None = None
    out: str | None = None
    seed: int = 0
    inputs: list[TensorSpec] | None = None
    output_names: list[str] | None = None
    eval_data: str | None = None
    calibration_data: str | None = None
    train_data: str | None = None
    samples: int = 256
    dims: dict[str, int] = field(default_factory=dict)
    gates: Gates = field(default_factory=Gates)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    gate_batch: int | None = None
    threads: int = 0
    bench_seconds: float = 1.0
    max_batch_size: int | None = None  # None: the server decides from the ONNX signature
    parent: str | None = None
    variants: list[VariantSpec] = field(default_factory=list)

    def check(self) -> None:
        """Validate everything that can be checked before loading a model: names, steps, parameters."""
        if not self.variants:
            raise OptimizeError("nothing to do: give --quantize/--prune/--graph-optimize/--fp32 or a recipe")
        seen = set()
        for v in self.variants:
            if v.name == "baseline":
                raise OptimizeError(
                    "'baseline' names the reference model in reports: pick another variant name"
                )
            if not v.name or v.name in seen:
                raise OptimizeError(f"variant names must be unique and non-empty ({v.name!r})")
            seen.add(v.name)
            for step, params in v.steps:
                make_config(step, params)
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise OptimizeError("benchmark batch sizes must be positive integers")
        if self.gate_batch and self.gate_batch not in self.batch_sizes:
            raise OptimizeError(
                f"gate_batch {self.gate_batch} is not one of the batch sizes {self.batch_sizes}"
            )
        if self.samples < 1:
            raise OptimizeError("samples must be at least 1")

    @property
    def speedup_batch(self) -> int:
        if self.gate_batch:
            return self.gate_batch
        return 8 if 8 in self.batch_sizes else max(self.batch_sizes)


GATE_KEYS = ("max_accuracy_drop", "min_cosine", "min_speedup")


def _known(table: Any, allowed: set[str], where: str) -> dict[str, Any]:
    """The table itself, after checking it is one and has only known keys (a typo must not be ignored)."""
    if not isinstance(table, dict):
        raise OptimizeError(f"{where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise OptimizeError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(sorted(allowed))}")
    return table


def _gates(table: Any, where: str) -> dict[str, float]:
    out = {}
    for key, value in _known(table, set(GATE_KEYS), where).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptimizeError(f"{where}: {key} must be a number, got {value!r}")
        out[key] = float(value)
    return out


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise OptimizeError(f"{where}: {key} has the wrong type ({value!r})")
    return value


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise OptimizeError(f"recipe {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise OptimizeError(f"recipe {path}: invalid TOML ({e})") from e
    base = path.parent

    def rel(value: str | None) -> str | None:
        if value is None:
            return None
        # module:factory strings and absolute paths stay as they are
        if ":" in value and not Path(value).exists() and not (base / value).exists():
            return value
        return str(base / value) if not Path(value).is_absolute() else value

    known = {
        "model",
        "weights",
        "name",
        "repo",
        "out",
        "seed",
        "inputs",
        "output_names",
        "data",
        "gates",
        "benchmark",
        "variants",
        "max_batch_size",
        "parent",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise OptimizeError(f"recipe {path}: unknown key {unknown[0]!r}; keys: {', '.join(sorted(known))}")
    r = Recipe()
    r.model = rel(_typed(data, "model", str, str(path)))
    r.weights = rel(_typed(data, "weights", str, str(path)))
    r.name = _typed(data, "name", str, str(path))
    r.repo = rel(_typed(data, "repo", str, str(path)))
    r.out = rel(_typed(data, "out", str, str(path)))
    r.seed = _typed(data, "seed", int, str(path)) or 0
    r.max_batch_size = _typed(data, "max_batch_size", int, str(path))
    r.parent = _typed(data, "parent", str, str(path))
    if "inputs" in data:
        try:
            r.inputs = [TensorSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in data["inputs"]]
            for spec in r.inputs:
                check_dtype(spec.dtype, f"recipe {path} [[inputs]] {spec.name!r}")
        except (KeyError, TypeError) as e:
            raise OptimizeError(f"recipe {path}: each [[inputs]] needs name, dtype and shape") from e
    r.output_names = _typed(data, "output_names", list, str(path))
    d = _known(
        data.get("data", {}), {"eval", "calibration", "train", "samples", "dims"}, f"recipe {path} [data]"
    )
    r.eval_data = rel(_typed(d, "eval", str, "[data]"))
    r.calibration_data = rel(_typed(d, "calibration", str, "[data]"))
    r.train_data = rel(_typed(d, "train", str, "[data]"))
    r.samples = _typed(d, "samples", int, "[data]") or 256
    r.dims = dict(_typed(d, "dims", dict, "[data]") or {})
    r.gates = Gates(**_gates(data.get("gates", {}), f"recipe {path} [gates]"))
    b = _known(
        data.get("benchmark", {}),
        {"batch_sizes", "gate_batch", "threads", "seconds"},
        f"recipe {path} [benchmark]",
    )
    r.batch_sizes = list(_typed(b, "batch_sizes", list, "[benchmark]") or [1, 8, 32])
    r.gate_batch = _typed(b, "gate_batch", int, "[benchmark]")
    r.threads = _typed(b, "threads", int, "[benchmark]") or 0
    r.bench_seconds = float(_typed(b, "seconds", (int, float), "[benchmark]") or 1.0)
    variants = data.get("variants", [])
    if not isinstance(variants, list):
        raise OptimizeError(f"recipe {path}: variants must be an array of tables ([[variants]])")
    for i, v in enumerate(variants):
        where = f"recipe {path}: variants[{i}]"
        _known(v, {"name", "steps", "gates"}, where)
        name = v.get("name") or f"variant{i + 1}"
        if not isinstance(v.get("steps"), list) or not v["steps"]:
            raise OptimizeError(
                f"{where} ({name!r}): 'steps' must be a non-empty list, e.g. steps = [{{step = \"quantize-dynamic\"}}]"
            )
        steps = []
        for s in v["steps"]:
            if not isinstance(s, dict) or "step" not in s:
                raise OptimizeError(
                    f"recipe {path}: variant {name!r}: each step is a table with a 'step' key"
                )
            params = {k: val for k, val in s.items() if k != "step"}
            steps.append((s["step"], params))
        r.variants.append(VariantSpec(name, steps, _gates(v.get("gates", {}), f"{where} gates")))
    return r


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def recipe_to_toml(r: Recipe) -> str:
    """The recipe as TOML that :func:`load_recipe` reads back to the same run (paths made absolute)."""
    lines: list[str] = ["# optimize recipe"]

    def absolute(p: str | None) -> str | None:
        if p is None or (":" in p and not Path(p).exists()):
            return p
        return str(Path(p).resolve())

    for key, value in [
        ("model", absolute(r.model)),
        ("weights", absolute(r.weights)),
        ("name", r.name),
        ("repo", absolute(r.repo)),
        ("out", absolute(r.out)),
        ("seed", r.seed),
        ("max_batch_size", r.max_batch_size),
        ("parent", r.parent),
        ("output_names", r.output_names),
    ]:
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for spec in r.inputs or []:
        lines += [
            "",
            "[[inputs]]",
            f"name = {_toml_value(spec.name)}",
            f"dtype = {_toml_value(spec.dtype)}",
            f"shape = {_toml_value(list(spec.shape))}",
        ]
    lines += ["", "[data]", f"samples = {r.samples}"]
    for key, value in [("eval", r.eval_data), ("calibration", r.calibration_data), ("train", r.train_data)]:
        if value is not None:
            lines.append(f"{key} = {_toml_value(absolute(value))}")
    if r.dims:
        lines.append(f"dims = {_toml_value(r.dims)}")
    lines += ["", "[gates]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in vars(r.gates).items() if v is not None]
    lines += [
        "",
        "[benchmark]",
        f"batch_sizes = {_toml_value(r.batch_sizes)}",
        f"threads = {r.threads}",
        f"seconds = {_toml_value(r.bench_seconds)}",
    ]
    if r.gate_batch:
        lines.append(f"gate_batch = {r.gate_batch}")
    for v in r.variants:
        steps = [dict({"step": s}, **p) for s, p in v.steps]
        lines += ["", "[[variants]]", f"name = {_toml_value(v.name)}", f"steps = {_toml_value(steps)}"]
        if v.gates:
            lines.append(f"gates = {_toml_value(v.gates)}")
    return "\n".join(lines) + "\n"
