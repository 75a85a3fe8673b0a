"""``ortserve-optimize MODEL [flags]`` or ``ortserve-optimize --recipe recipe.toml``: see ``ortserve-optimize --help``.

Exit status: 0 when at least one variant was accepted (and published, with --repo), 1 when every variant was
rejected by a gate, 2 on bad input (a one-line message says what to fix)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ortserve.optimize.errors import OptimizeError

EPILOG = """\
common case (no recipe):
  optimize model.onnx --quantize dynamic --repo models --name digits
      builds a dynamic INT8 variant with the settings that suit this CPU (per-channel weights, reduce_range
      only without VNNI, the graph rewrites that measured faster here), validates it against model.onnx, benchmarks
      it at batch 1/8/32 and publishes it as the next version of models/digits. default_version is never
      changed: publishing is not rolling out.

  optimize my_pkg.nets:make_cnn --weights cnn.safetensors --input x:float32:batch,3,32,32 \\
      --prune 0.5 --train-data train.npz --quantize static --data eval.npz --max-accuracy-drop 1

  optimize path/to/hf-model-dir --quantize dynamic --dim sequence=128 --min-cosine 0.99

recipe (TOML; paths relative to it; --write-recipe writes the flags' run as one):
  model = "model.onnx"
  name = "digits"
  repo = "models"
  [data]
  eval = "eval.npz"          # arrays named like the inputs, optional `labels`
  [gates]
  max_accuracy_drop = 1.0
  [[variants]]
  name = "int8-static"
  steps = [{step = "quantize-static", method = "entropy", per_channel = true}]

steps: export, graph-optimize, quantize-dynamic, quantize-static, fp16, prune-structured, prune-magnitude,
finetune (ortserve-optimize --list-steps shows their parameters).

retrain (the continuous-learning loop; ortserve-optimize retrain --help):
  optimize retrain --repo models --model digits --payload-log payloads \
      --source ortserve.optimize.examples.digits:mlp --canary
      fine-tunes the default version on the payload log's requests that got feedback, validates it against
      the default on a held-out slice, publishes it with its lineage and starts a rollout of it.
exit status: 0 a variant was accepted, 1 all were rejected, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ortserve-optimize",
        description="Build, validate, benchmark and publish optimized ONNX variants of a model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", nargs="?", help="an .onnx or .pt2 file, a transformers directory, or module:factory"
    )
    p.add_argument("--recipe", type=Path, help="TOML recipe (flags given as well override its settings)")
    p.add_argument("--weights", help="safetensors or .pt state dict for module:factory (loaded weights_only)")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:DTYPE:DIMS",
        help="input signature for module:factory, e.g. x:float32:batch,3,32,32 (repeatable)",
    )
    p.add_argument("--output-name", action="append", default=[], help="output names for export (repeatable)")
    g = p.add_argument_group("variants (common case)")
    g.add_argument(
        "--quantize",
        action="append",
        default=[],
        choices=["dynamic", "static", "fp16"],
        help="add a variant: dynamic INT8, static INT8 (QDQ) or fp16 (repeatable)",
    )
    g.add_argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    g.add_argument(
        "--prune", type=float, metavar="RATIO", help="add a structurally pruned variant (torch sources)"
    )
    g.add_argument("--finetune-epochs", type=int, default=2, help="recovery epochs after --prune (0: none)")
    g.add_argument("--graph-optimize", action="store_true", help="add a graph-optimized FP32 variant")
    g.add_argument(
        "--fp32",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="publish the FP32 model itself as a variant (default: for torch sources)",
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", help="evaluation .npz (arrays named like the inputs, optional labels)")
    d.add_argument("--calibration", help="calibration .npz (default: the evaluation data)")
    d.add_argument("--train-data", help="training .npz for finetune")
    d.add_argument("--samples", type=int, help="rows of synthetic data when no --data (default 256)")
    d.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a dynamic dimension for synthetic data and benchmarks, e.g. sequence=128",
    )
    d.add_argument("--seed", type=int)
    gt = p.add_argument_group("gates")
    gt.add_argument("--max-accuracy-drop", type=float, help="percentage points")
    gt.add_argument("--min-cosine", type=float)
    gt.add_argument("--min-speedup", type=float)
    b = p.add_argument_group("benchmark")
    b.add_argument("--batch-sizes", help="comma-separated, default 1,8,32")
    b.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    b.add_argument("--bench-seconds", type=float, help="time per model and batch size (default 1)")
    o = p.add_argument_group("output")
    o.add_argument("--repo", help="model repository to publish accepted variants into")
    o.add_argument("--name", help="the model's name in the repository")
    o.add_argument(
        "--sign-key",
        help="PEM EC private key: sign each published version (OpenSSF model signing, offline; "
        "needs ortserve[signing]; an encrypted key's password comes from ORTSERVE_SIGN_KEY_PASSWORD)",
    )
    o.add_argument("--out", help="report folder (default optimize-out)")
    o.add_argument(
        "--intended-use", metavar="TEXT", help="what the published versions are for, for their model cards"
    )
    o.add_argument(
        "--limitation",
        action="append",
        default=[],
        metavar="TEXT",
        help="a known limitation for the model cards (repeatable)",
    )
    o.add_argument("--write-recipe", type=Path, metavar="FILE", help="write the run as a recipe and exit")
    o.add_argument("--list-steps", action="store_true", help="list the steps and their parameters, then exit")
    o.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no output but errors: no progress, no summary, and ONNX Runtime's, torch's and transformers' "
        "own messages silenced (progress is bars on a terminal, plain lines otherwise)",
    )
    return p


def recipe_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ortserve.optimize.recipe import Recipe, VariantSpec, load_recipe
    from ortserve.optimize.sources import kind_of, parse_input_spec

    r = load_recipe(args.recipe) if args.recipe else Recipe()
    if args.model:
        r.model = args.model
    for attr, value in [
        ("weights", args.weights),
        ("repo", args.repo),
        ("name", args.name),
        ("sign_key", args.sign_key),
        ("out", args.out),
        ("eval_data", args.data),
        ("calibration_data", args.calibration),
        ("train_data", args.train_data),
        ("samples", args.samples),
        ("seed", args.seed),
        ("threads", args.threads),
        ("bench_seconds", args.bench_seconds),
        ("intended_use", args.intended_use),
    ]:
        if value is not None:
            setattr(r, attr, value)
    if args.input:
        r.inputs = [parse_input_spec(s) for s in args.input]
    if args.output_name:
        r.output_names = list(args.output_name)
    if args.limitation:
        r.limitations = [*r.limitations, *args.limitation]
    for item in args.dim:
        key, _, value = item.partition("=")
        if not key or not value.isdigit():
            raise OptimizeError(f"--dim {item!r}: write NAME=VALUE with an integer value, e.g. sequence=128")
        r.dims[key] = int(value)
    if args.batch_sizes:
        try:
            r.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x]
        except ValueError:
            raise OptimizeError(f"--batch-sizes {args.batch_sizes!r}: write integers like 1,8,32") from None
    for gate in ("max_accuracy_drop", "min_cosine", "min_speedup"):
        if getattr(args, gate) is not None:
            setattr(r.gates, gate, getattr(args, gate))
    if r.model is None:
        raise OptimizeError("no model given: optimize MODEL ... (or --recipe with model = ...)")
    kind = kind_of(r.model)
    torch_source = kind != "onnx"
    flag_variants: list[VariantSpec] = []
    fp32 = args.fp32 if args.fp32 is not None else (torch_source and not args.recipe)
    if fp32:
        flag_variants.append(VariantSpec("fp32", []))
    if args.graph_optimize:
        flag_variants.append(VariantSpec("fp32-optimized", [("graph-optimize", {})]))
    prune: list[tuple[str, dict]] = []
    if args.prune is not None:
        if not torch_source:
            raise OptimizeError(
                "--prune needs a PyTorch source (module:factory, .pt2 or a transformers directory)"
            )
        prune = [("prune-structured", {"ratio": args.prune})]
        if args.finetune_epochs:
            prune.append(("finetune", {"epochs": args.finetune_epochs}))
        flag_variants.append(VariantSpec(f"pruned{int(args.prune * 100)}", list(prune)))
    for q in args.quantize:
        for base, steps in [("", [])] + ([("pruned-", prune)] if prune else []):
            if q == "dynamic":
                flag_variants.append(VariantSpec(f"{base}int8-dynamic", [*steps, *dynamic_preset(kind)]))
            elif q == "static":
                flag_variants.append(
                    VariantSpec(
                        f"{base}int8-static",
                        [*steps, ("quantize-static", {"method": args.calibration_method})],
                    )
                )
            else:
                flag_variants.append(VariantSpec(f"{base}fp16", [*steps, ("fp16", {})]))
    r.variants.extend(flag_variants)
    return r


def dynamic_preset(kind: str) -> list[tuple[str, dict]]:
    """The steps the common case ``--quantize dynamic`` uses: graph-optimize at level basic (constant folding,
    and residual Add -> Sum so that ONNX Runtime keeps its slow SkipLayerNormalization out), then per-channel
    INT8 (reduce_range decided from the CPU by the step). Attention fusion stays off: on all-MiniLM-L6-v2 the
    unfused INT8 graph measured faster than QAttention or MultiHeadAttention (benchmarks/RESULTS.md)."""
    return [("graph-optimize", {"level": "basic"}), ("quantize-dynamic", {})]


def _list_steps() -> str:
    import dataclasses

    from ortserve.optimize.steps import REGISTRY, _load_all

    _load_all()
    lines = []
    for name in sorted(REGISTRY):
        s = REGISTRY[name]
        params = ", ".join(
            f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f"{f.name}=[...]"
            for f in dataclasses.fields(s.config)
        )
        lines.append(f"{name:18s} ({s.accepts}) {s.summary}\n{'':18s} {params}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "retrain":  # ortserve-optimize retrain ...: payload log + feedback -> new version
        from ortserve.optimize.retrain import main as retrain_main

        return retrain_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.list_steps:
            print(_list_steps())
            return 0
        recipe = recipe_from_args(args)
        recipe.check()
        if args.write_recipe:
            from ortserve.optimize.recipe import recipe_to_toml

            try:
                args.write_recipe.write_text(recipe_to_toml(recipe))
            except OSError as e:
                raise OptimizeError(f"--write-recipe {args.write_recipe}: {e.strerror or e}") from e
            print(f"ortserve-optimize: wrote {args.write_recipe}")
            return 0
        from ortserve.optimize.pipeline import run
        from ortserve.optimize.progress import make_progress

        progress = make_progress(args.quiet)  # bars on a terminal, lines otherwise, nothing with --quiet
        try:
            result = run(recipe, progress)
        finally:
            progress.close()
    except OptimizeError as e:
        print(f"ortserve-optimize: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ortserve-optimize: interrupted", file=sys.stderr)
        return 130
    if not args.quiet:
        for v in result.variants:
            state = (
                f"accepted (version {v.version})" if v.version else "accepted" if v.accepted else "rejected"
            )
            why = "" if v.accepted else ": " + "; ".join(v.reasons)
            print(f"{v.name}: {state}{why}")
        print(f"report: {result.report_dir / 'report.md'}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
