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
    [reference]                  # each published version's drift baseline (reference.json), from the eval data
    bins = 10
    reduce = {pixels = "channels"}   # per input: flatten | channels | stats (default: by shape)
    [[variants]]
    name = "int8-dynamic"
    steps = [{step = "graph-optimize"}, {step = "quantize-dynamic", per_channel = true}]

The file's tables are declared once, as the dataclasses of :class:`RecipeFile`, and checked by
:mod:`ortserve.schema`: an unknown key or a value of the wrong type is one line naming the place, e.g.
``recipe r.toml [benchmark] batch_sizes: expected a non-empty list of integers >= 1, got [0]``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.dtypes import TensorSpec
from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.gates import Gates
from ortserve.optimize.specs import FEEDABLE
from ortserve.optimize.steps import make_config
from ortserve.schema import from_table, to_table, to_toml

__all__ = ["Recipe", "RecipeFile", "VariantSpec", "load_recipe", "recipe_to_toml"]


@dataclass
class VariantSpec:
    name: str
    steps: list[tuple[str, dict[str, Any]]]
    gates: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceOptions:
    """The ``[reference]`` table: the reference profile each published version carries (drift baseline)."""

    enabled: bool = True
    bins: int = field(default=10, metadata={"ge": 2, "le": 100, "help": "quantile bins per feature"})
    prediction: str | None = field(default=None, metadata={"help": "the output to profile (default: found)"})
    reduce: dict[str, str] = field(
        default_factory=dict, metadata={"help": "input -> flatten | channels | stats (default: by shape)"}
    )


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
    sign_key: str | None = None  # PEM EC private key: published versions get a model.sig
    variants: list[VariantSpec] = field(default_factory=list)
    reference: ReferenceOptions = field(default_factory=ReferenceOptions)
    # For the model cards of the published versions (MODEL_CARD.md); absent: the card says what it can tell.
    intended_use: str | None = None
    limitations: list[str] = field(default_factory=list)

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


# -- the recipe file: its tables, checked by ortserve.schema ---------------------------------------------

_STEPS = "'steps' must be a list of steps, e.g. steps = [{step = \"quantize-dynamic\"}] (steps = [] keeps the model as it is)"


@dataclass(frozen=True)
class _Input:
    name: str
    dtype: str = field(metadata={"choices": FEEDABLE})
    shape: tuple[int | str, ...] = field(metadata={"help": "sizes, and names for dynamic dimensions"})


@dataclass(frozen=True)
class _Data:
    eval: str | None = None
    calibration: str | None = None
    train: str | None = None
    samples: int = field(default=256, metadata={"ge": 1, "help": "rows of synthetic data without eval"})
    dims: dict[str, int] = field(
        default_factory=dict, metadata={"ge": 1, "help": "dynamic dimensions' values"}
    )


@dataclass(frozen=True)
class _Benchmark:
    batch_sizes: tuple[int, ...] = field(default=(1, 8, 32), metadata={"ge": 1, "min_items": 1})
    gate_batch: int | None = field(default=None, metadata={"ge": 1})
    threads: int = field(default=0, metadata={"ge": 0, "help": "intra-op threads (0: all cores)"})
    seconds: float = field(default=1.0, metadata={"ge": 0, "help": "per model and batch size"})


@dataclass(frozen=True)
class _Variant:
    name: str = ""
    steps: tuple[dict[str, Any], ...] | None = None
    gates: Gates = field(default_factory=Gates)

    def __post_init__(self) -> None:
        if self.steps is None:  # a typo ("step = ...") must not publish the untouched model
            raise ValueError(_STEPS)
        if any("step" not in s for s in self.steps):
            raise ValueError("each step is a table with a 'step' key")


@dataclass(frozen=True)
class RecipeFile:
    """A recipe file's tables, as written; :func:`load_recipe` turns one into a :class:`Recipe`."""

    model: str | None = None
    weights: str | None = None
    name: str | None = None
    repo: str | None = None
    out: str | None = None
    seed: int = 0
    max_batch_size: int | None = field(default=None, metadata={"ge": 0})
    parent: str | None = None
    sign_key: str | None = None
    intended_use: str | None = field(
        default=None, metadata={"help": "what the published versions are for (their model cards say it)"}
    )
    limitations: tuple[str, ...] = field(
        default=(), metadata={"help": "known limitations, one a string, added to the model cards"}
    )
    output_names: tuple[str, ...] | None = None
    inputs: tuple[_Input, ...] | None = None
    data: _Data = field(default_factory=_Data)
    gates: Gates = field(default_factory=Gates)
    benchmark: _Benchmark = field(default_factory=_Benchmark)
    reference: ReferenceOptions = field(default_factory=ReferenceOptions)
    variants: tuple[_Variant, ...] = ()


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise OptimizeError(f"recipe {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise OptimizeError(f"recipe {path}: invalid TOML ({e})") from e
    f = from_table(RecipeFile, data, f"recipe {path}", error=OptimizeError)
    base = path.parent

    def rel(value: str | None) -> str | None:
        if value is None:
            return None
        # module:factory strings and absolute paths stay as they are
        if ":" in value and not Path(value).exists() and not (base / value).exists():
            return value
        return str(base / value) if not Path(value).is_absolute() else value

    return Recipe(
        model=rel(f.model),
        weights=rel(f.weights),
        name=f.name,
        repo=rel(f.repo),
        out=rel(f.out),
        seed=f.seed,
        inputs=None if f.inputs is None else [TensorSpec.of(i.name, i.dtype, i.shape) for i in f.inputs],
        output_names=None if f.output_names is None else list(f.output_names),
        eval_data=rel(f.data.eval),
        calibration_data=rel(f.data.calibration),
        train_data=rel(f.data.train),
        samples=f.data.samples,
        dims=dict(f.data.dims),
        gates=f.gates,
        batch_sizes=list(f.benchmark.batch_sizes),
        gate_batch=f.benchmark.gate_batch,
        threads=f.benchmark.threads,
        bench_seconds=f.benchmark.seconds,
        max_batch_size=f.max_batch_size,
        parent=f.parent,
        reference=f.reference,
        sign_key=rel(f.sign_key),
        intended_use=f.intended_use,
        limitations=list(f.limitations),
        variants=[
            VariantSpec(
                v.name or f"variant{i + 1}",
                [(s["step"], {k: x for k, x in s.items() if k != "step"}) for s in v.steps or ()],
                to_table(v.gates),
            )
            for i, v in enumerate(f.variants)
        ],
    )


def recipe_to_toml(r: Recipe) -> str:
    """The recipe as TOML that :func:`load_recipe` reads back to the same run (paths made absolute, every
    setting written out, so that a later change of a default does not change the run)."""

    def absolute(p: str | None) -> str | None:
        if p is None or (":" in p and not Path(p).exists()):
            return p
        return str(Path(p).resolve())

    f = RecipeFile(
        model=absolute(r.model),
        weights=absolute(r.weights),
        name=r.name,
        repo=absolute(r.repo),
        out=absolute(r.out),
        seed=r.seed,
        max_batch_size=r.max_batch_size,
        parent=r.parent,
        sign_key=absolute(r.sign_key),
        intended_use=r.intended_use,
        limitations=tuple(r.limitations),
        output_names=None if r.output_names is None else tuple(r.output_names),
        inputs=None if r.inputs is None else tuple(_Input(s.name, s.dtype, s.dims) for s in r.inputs),
        data=_Data(
            absolute(r.eval_data),
            absolute(r.calibration_data),
            absolute(r.train_data),
            r.samples,
            dict(r.dims),
        ),
        gates=r.gates,
        benchmark=_Benchmark(tuple(r.batch_sizes), r.gate_batch, r.threads, r.bench_seconds),
        reference=r.reference,
        variants=tuple(
            _Variant(v.name, tuple(dict({"step": s}, **p) for s, p in v.steps), Gates(**v.gates))
            for v in r.variants
        ),
    )
    return to_toml(to_table(f, defaults=True), "optimize recipe")
