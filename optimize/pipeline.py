"""One optimize run: load the source, build every variant, validate, benchmark, gate, publish, report.

Nothing reaches the repository before every variant has been built, validated and benchmarked; each published
version is renamed into place whole (see :mod:`ortserve.optimize.publish`, over :mod:`ortserve.repository`)."""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.optimize.artifacts import Artifact, OnnxArtifact, TorchArtifact
from ortserve.optimize.bench import benchmark
from ortserve.optimize.context import Context, Progress
from ortserve.optimize.cpu import cpu_info
from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.recipe import Recipe, VariantSpec
from ortserve.optimize.results import RunResult, VariantResult
from ortserve.optimize.sources import Source, load_source
from ortserve.optimize.specs import Dataset, load_npz, synthetic_inputs
from ortserve.optimize.steps import get_step, make_config
from ortserve.optimize.steps.onnx_steps import copy_onnx
from ortserve.optimize.validate import compare, run_onnx, run_torch
from ortserve.repository import (
    MANIFEST,
    REFERENCE,
    ConfigError,
    ModelCard,
    canary_flag,
    flags_document,
    flags_text,
    load_model_config,
    write_flags_text,
)

__all__ = ["RunResult", "VariantResult", "run"]

BASELINE = "baseline"


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("onnx", "onnxruntime", "numpy", "torch", "torch-pruning", "transformers", "onnxscript"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _load_data(recipe: Recipe, source: Source) -> tuple[Dataset, Dataset, Dataset | None]:
    eval_data = (
        load_npz(Path(recipe.eval_data), source.specs)
        if recipe.eval_data
        else synthetic_inputs(source.specs, recipe.samples, recipe.dims, recipe.seed)
    )
    calib = load_npz(Path(recipe.calibration_data), source.specs) if recipe.calibration_data else eval_data
    train = load_npz(Path(recipe.train_data), source.specs) if recipe.train_data else None
    return eval_data, calib, train


def _apply(
    variant: VariantSpec, art: Artifact, ctx: Context, workdir: Path
) -> tuple[OnnxArtifact, list[dict]]:
    """Run the variant's steps in order; a torch artifact is exported before the first ONNX step and at the end."""
    done: list[dict[str, Any]] = []
    steps = list(variant.steps)
    i = 0
    while True:
        if i < len(steps):
            name, params = steps[i]
        elif isinstance(art, TorchArtifact):
            name, params = "export", {}
        else:
            break
        step = get_step(name)
        cfg = make_config(name, params)
        if step.accepts == "torch" and not isinstance(art, TorchArtifact):
            raise OptimizeError(f"variant {variant.name!r}: step {name!r} needs a PyTorch model, not ONNX")
        if step.accepts == "onnx" and isinstance(art, TorchArtifact):
            steps.insert(i, ("export", {}))
            continue
        ctx.log(f"{variant.name}: {name}")
        out_dir = workdir / variant.name / f"{len(done):02d}-{name}"
        art = step.run(art, cfg, ctx, out_dir)
        done.append({"step": name, "params": {k: v for k, v in vars(cfg).items()}})
        i += 1
    assert isinstance(art, OnnxArtifact)
    return art, done


def run(
    recipe: Recipe,
    progress: Progress | None = None,
    workdir: Path | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> RunResult:
    """``manifest_extra``: more fields for each published version's manifest (retrain's lineage)."""
    log = progress or Progress()
    recipe.check()
    if not recipe.model:
        raise OptimizeError("no model given: pass MODEL or set model in the recipe")
    if recipe.repo and not recipe.name:
        raise OptimizeError("--repo needs --name (the model's folder in the repository)")
    if recipe.sign_key and not recipe.repo:
        raise OptimizeError("--sign-key signs published versions: it needs --repo and --name")
    signer = None
    if recipe.repo:
        from ortserve.optimize.publish import check_name, make_signer

        check_name(recipe.name or "")  # before hours of work, not at publishing time
        signer = make_signer(recipe.sign_key)  # the key too
    seed = recipe.seed
    np.random.seed(seed)
    source = load_source(recipe.model, recipe.weights, recipe.inputs, recipe.output_names)
    named = {d for s in source.specs for d in s.dim_names if d}
    unknown = sorted(set(recipe.dims) - named)
    if unknown:
        raise OptimizeError(
            f"--dim {unknown[0]}: the model has no dimension of that name; its named dimensions: "
            f"{', '.join(sorted(named)) or 'none'}"
        )
    eval_data, calib, train = _load_data(recipe, source)
    log(f"source: {source.description}; eval data: {eval_data.source}")
    cpu = cpu_info()
    out_dir = Path(recipe.out or "optimize-out")
    try:  # before anything is built or published: a report folder that cannot be made fails now
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptimizeError(f"report folder {out_dir}: {e.strerror or e}") from e
    with tempfile.TemporaryDirectory(prefix="optimize-", dir=workdir) as tmp:
        work = Path(tmp)
        ctx = Context(work, seed, source.specs, recipe.dims, calib, train, cpu, source.hints, log)
        if isinstance(source.artifact, TorchArtifact):
            ctx.reference_module = source.artifact.module
        # The reference outputs and the FP32 ONNX baseline for speed-ups.
        if isinstance(source.artifact, TorchArtifact):
            _seed_torch(seed)
            ref_out = run_torch(source.artifact.module, source.specs, eval_data)
            baseline_art, _ = _apply(VariantSpec(BASELINE, []), source.artifact, ctx, work)
            reference = "PyTorch model"
        else:
            baseline_art = copy_onnx(source.artifact.path, work / BASELINE / "00-copy")
            ref_out = run_onnx(source.artifact.path, eval_data)
            reference = "source ONNX model"
        results: list[VariantResult] = []
        outputs: dict[
            str, list[np.ndarray]
        ] = {}  # each variant's outputs on the eval data (reference profiles)
        for variant in recipe.variants:
            _seed_torch(seed)
            art = copy.copy(source.artifact)
            if not variant.steps:  # the FP32 model itself: the baseline (a copy of the source, or its export)
                final: OnnxArtifact = copy_onnx(baseline_art.path, work / variant.name / "00-copy")
                done: list[dict[str, Any]] = (
                    [{"step": "export", "params": vars(make_config("export", {}))}]
                    if isinstance(art, TorchArtifact)
                    else []
                )
            else:
                final, done = _apply(variant, art, ctx, work)
            res = VariantResult(variant.name, done, final.path)
            outputs[variant.name] = run_onnx(final.path, eval_data)
            res.metrics = compare(ref_out, outputs[variant.name], eval_data.labels, eval_data.inputs)
            results.append(res)
        base_metrics = compare(
            ref_out, run_onnx(baseline_art.path, eval_data), eval_data.labels, eval_data.inputs
        )
        log(f"benchmark: batch sizes {recipe.batch_sizes}, {recipe.bench_seconds:g}s each")
        models = {BASELINE: baseline_art.path} | {r.name: r.path for r in results if r.path}
        figures = benchmark(
            models,
            source.specs,
            recipe.dims,
            recipe.batch_sizes,
            recipe.threads,
            recipe.bench_seconds,
            seed,
            log,
        )
        base_bench = figures[BASELINE]
        gb = str(recipe.speedup_batch)
        for res, variant in zip(results, recipe.variants, strict=True):
            res.bench = figures[res.name]
            res.speedup = {
                b: base_bench["batches"][b]["p50_ms"] / res.bench["batches"][b]["p50_ms"]
                for b in res.bench["batches"]
            }
            gates = recipe.gates.merged(variant.gates)
            res.reasons = gates.check(res.metrics, res.speedup.get(gb))
            res.accepted = not res.reasons
        info = {
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": source.description,
            "source_kind": source.kind,
            "reference": reference,
            "eval_data": eval_data.source,
            "eval_rows": eval_data.rows,
            "calibration_data": _described(calib),
            "train_data": _described(train) if train is not None else None,
            "synthetic_data": eval_data.synthetic,
            "seed": seed,
            "cpu": cpu,
            "libraries": library_versions(),
            "gates": vars(recipe.gates),
            "speedup_batch": recipe.speedup_batch,
            "inputs": [s.to_dict() for s in source.specs],
        }
        baseline = {"validation": base_metrics, "benchmark": base_bench}
        accepted = [r for r in results if r.accepted]
        if recipe.repo and accepted:
            from ortserve.optimize.publish import publish_versions
            from ortserve.optimize.reference import reference_json

            parent = recipe.parent or _parent_version(source)
            entries = [
                (r.path, {**_manifest_extra(r, info, parent), **(manifest_extra or {})})
                for r in accepted
                if r.path
            ]
            references = [
                reference_json(r.path, outputs[r.name], eval_data, recipe.reference)
                for r in accepted
                if r.path
            ]
            if recipe.reference.enabled and eval_data.synthetic:
                log(
                    "no reference profile (drift baseline) for the published versions: the eval data is synthetic"
                )
            cards = [_card(r, info, baseline, recipe, parent) for r in accepted if r.path]
            versions = publish_versions(
                Path(recipe.repo),
                recipe.name or "",
                entries,
                recipe.max_batch_size,
                references,
                signer=signer,
                cards=cards,
            )
            for r, v in zip(accepted, versions, strict=True):
                r.version = v
                log(f"published {r.name} as {recipe.name}/{v}" + (" (signed)" if signer else ""))
        result = RunResult(results, baseline, out_dir, info)
        if recipe.repo and recipe.name:
            _propose_canary(result, Path(recipe.repo) / recipe.name, recipe.name, out_dir)
        from ortserve.optimize.report import write_report

        write_report(result, out_dir, models={r.name: r.path for r in results if r.path})
        for r in results:
            r.path = None  # the temporary folder is gone after this
    return result


CANARY_PERCENT = 10


def _propose_canary(result: RunResult, model_dir: Path, name: str, out_dir: Path) -> None:
    """Write ``canary-flags.json`` (the flags document ``<repo>/flags.json`` takes) sending CANARY_PERCENT of
    traffic to the fastest accepted variant; the user merges it to roll out. Nothing if no variant is faster
    or the model has no pinned default version."""
    gb = str(result.info["speedup_batch"])
    best = max((v for v in result.variants if v.version), key=lambda v: v.speedup.get(gb, 0), default=None)
    if best is None or best.speedup.get(gb, 0) <= 1.0:
        return
    try:
        current = load_model_config(model_dir).default_version
    except ConfigError:
        current = None
    if current is None or current == str(best.version):
        return
    flag = canary_flag(current, str(best.version), CANARY_PERCENT, candidate_variant=best.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_flags_text(out_dir / "canary-flags.json", flags_text(flags_document({name: flag})))


def _seed_torch(seed: int) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def _parent_version(source: Source) -> str | None:
    """The version the source came from, when it is a model.onnx inside a repository version folder."""
    if isinstance(source.artifact, OnnxArtifact):
        folder = Path(source.artifact.path).resolve().parent
        if folder.name.isdigit() and (folder / MANIFEST).exists():
            return folder.name
    return None


def _described(data: Dataset) -> str:
    return data.source if "rows" in data.source else f"{data.source} ({data.rows} rows)"


def _card(
    r: VariantResult, info: dict[str, Any], baseline: dict[str, Any], recipe: Recipe, parent: str | None
) -> ModelCard:
    from ortserve.optimize.card import model_card

    spec = next(v for v in recipe.variants if v.name == r.name)
    return model_card(
        r,
        info,
        baseline,
        recipe.gates.merged(spec.gates),
        model=recipe.name or "",
        parent=parent,
        intended_use=recipe.intended_use,
        limitations=recipe.limitations,
    )


def _manifest_extra(r: VariantResult, info: dict[str, Any], parent: str | None) -> dict[str, Any]:
    return {
        "parent": parent,
        "variant": r.name,
        "recipe": {"steps": r.steps},
        "seed": info["seed"],
        "source": info["source"],
        "validation": dict(
            r.metrics, reference=info["reference"], data=info["eval_data"], synthetic=info["synthetic_data"]
        ),
        "reference_profile": None
        if info["synthetic_data"]
        else {"file": REFERENCE, "data": info["eval_data"]},
        "benchmark": dict(r.bench, speedup=r.speedup),
        "libraries": info["libraries"],
        "cpu": info["cpu"],
        "created": info["created"],
    }
