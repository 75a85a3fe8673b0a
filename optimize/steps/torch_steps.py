"""Steps on PyTorch modules: export (to ONNX, with a parity check), prune-structured (Torch-Pruning),
prune-magnitude (also on ONNX files) and finetune."""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.optimize.artifacts import Artifact, OnnxArtifact, TorchArtifact
from ortserve.optimize.context import Context
from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.steps.registry import out_file, register

__all__ = ["Export", "Finetune", "PruneMagnitude", "PruneStructured", "export_module"]


@dataclass
class Export:
    """torch.onnx.export with dynamic batch (and other named) dims, onnx.checker, shape inference, and a parity
    check against PyTorch on a few rows: ``|onnx - torch| <= atol + rtol * max|torch|`` or the step fails with
    the largest deviation and where it is. ``exporter``: auto (TorchScript for modules, whose graphs ONNX
    Runtime's transformer fusions recognise; dynamo for .pt2 programs), torchscript or dynamo."""

    opset: int = 17
    exporter: str = "auto"
    atol: float = 1e-4
    rtol: float = 1e-3
    parity_rows: int = 8

    def validate(self) -> None:
        if self.exporter not in ("auto", "torchscript", "dynamo"):
            raise OptimizeError(
                f"export: exporter must be auto, torchscript or dynamo, not {self.exporter!r}"
            )


def _example(art: TorchArtifact, ctx: Context, rows: int) -> tuple[Any, ...]:
    import torch

    data = ctx.calibration.head(max(rows, 2))
    return tuple(torch.from_numpy(np.ascontiguousarray(data.inputs[s.name])) for s in art.specs)


def export_module(art: TorchArtifact, cfg: Export, ctx: Context, out: Path) -> None:
    import onnx
    import torch

    example = _example(art, ctx, cfg.parity_rows)
    names = [s.name for s in art.specs]
    program = art.program
    exporter = cfg.exporter
    if exporter == "auto":
        exporter = "dynamo" if program is not None else "torchscript"
    torch.manual_seed(ctx.seed)
    try:
        if exporter == "dynamo":
            from torch.export import Dim

            dims: dict[str, Any] = {}
            shapes = []
            for s in art.specs:
                shape = {}
                for axis, d in enumerate(s.dims):
                    if isinstance(d, str):
                        dims.setdefault(
                            d, Dim(d.replace("-", "_"), min=1, max=4096) if axis else Dim("batch", max=4096)
                        )
                        shape[axis] = dims[d]
                shapes.append(shape)
            target = program if program is not None else art.module
            prog = torch.onnx.export(
                target,
                example,
                input_names=names,
                output_names=art.output_names,
                dynamo=True,
                opset_version=max(cfg.opset, 18),
                dynamic_shapes=tuple(shapes) if program is None else None,
                verbose=False,
            )
            if prog is None:  # pragma: no cover - dynamo=True always returns a program
                raise OptimizeError("export failed (dynamo): torch.onnx.export returned no program")
            prog.save(str(out))
        else:
            axes = {s.name: {a: d for a, d in enumerate(s.dims) if isinstance(d, str)} for s in art.specs}
            for o in art.output_names:
                axes[o] = {0: "batch"}
            torch.onnx.export(
                art.module,
                example,
                str(out),
                input_names=names,
                output_names=art.output_names,
                dynamic_axes=axes,
                opset_version=cfg.opset,
                dynamo=False,
            )
    except OptimizeError:
        raise
    except Exception as e:
        raise OptimizeError(f"export failed ({exporter}): {str(e).strip().splitlines()[0][:300]}") from e
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save_model(model, str(out))
    _parity(art, out, example, cfg)


def _parity(art: TorchArtifact, path: Path, example: tuple[Any, ...], cfg: Export) -> None:
    import onnxruntime as ort
    import torch

    with torch.inference_mode():
        ref = art.module(*example)
    refs = [r.float().numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {s.name: e.numpy() for s, e in zip(art.specs, example, strict=True)})
    for name, r, g in zip(art.output_names, refs, got, strict=False):
        if r.shape != g.shape:
            raise OptimizeError(
                f"export parity: output {name!r} has shape {g.shape} in ONNX, {r.shape} in PyTorch"
            )
        diff = np.abs(r - g.astype(np.float32))
        limit = cfg.atol + cfg.rtol * float(np.abs(r).max(initial=0.0))
        if diff.size and float(diff.max()) > limit:
            at = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
            raise OptimizeError(
                f"export parity failed: output {name!r} deviates by {float(diff.max()):.3g} at index {at} "
                f"(limit {limit:.3g}: atol {cfg.atol:g} + rtol {cfg.rtol:g} * max|output|)"
            )


@register("export", Export, "torch", "torch.onnx.export with dynamic dims and a parity check")
def export(art: TorchArtifact, cfg: Export, ctx: Context, out_dir: Path) -> OnnxArtifact:
    out = out_file(out_dir)
    with ctx.log.task(f"export ({cfg.exporter} exporter, parity check)"):
        export_module(art, cfg, ctx, out)
    return OnnxArtifact(out)


@dataclass
class PruneStructured:
    """Remove a fraction of channels (Torch-Pruning: whole filters/neurons with their dependants, so the
    model is physically smaller and faster). The output layer is never pruned; ``ignore`` names more modules.
    ``round_to`` keeps channel counts multiples of it (8 suits SIMD kernels)."""

    ratio: float = 0.5
    importance: str = "l2"  # l1 | l2
    round_to: int = 0
    ignore: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise OptimizeError(f"prune-structured: ratio must be between 0 and 1, not {self.ratio}")
        if self.importance not in ("l1", "l2"):
            raise OptimizeError(f"prune-structured: importance must be l1 or l2, not {self.importance!r}")


def _output_layers(module: Any) -> list[Any]:
    import torch

    layers = [
        m for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d))
    ]
    return layers[-1:]


@register(
    "prune-structured", PruneStructured, "torch", "remove channels with Torch-Pruning (smaller, faster)"
)
def prune_structured(art: TorchArtifact, cfg: PruneStructured, ctx: Context, out_dir: Path) -> TorchArtifact:
    import torch

    try:
        import torch_pruning as tp
    except ImportError as e:
        raise OptimizeError("prune-structured needs torch-pruning (pip install .[optimize])") from e
    module = copy.deepcopy(art.module).eval()
    named = dict(module.named_modules())
    unknown = [n for n in cfg.ignore if n not in named]
    if unknown:
        raise OptimizeError(f"prune-structured: no module named {unknown[0]!r} to ignore")
    ignored = _output_layers(module) + [named[n] for n in cfg.ignore]
    example = _example(art, ctx, 2)
    before = sum(p.numel() for p in module.parameters())
    pruner = tp.pruner.MetaPruner(
        module,
        example,
        importance=tp.importance.MagnitudeImportance(p=1 if cfg.importance == "l1" else 2),
        pruning_ratio=cfg.ratio,
        ignored_layers=ignored,
        round_to=cfg.round_to or None,
    )
    pruner.step()
    after = sum(p.numel() for p in module.parameters())
    ctx.log(f"prune-structured: parameters {before} -> {after} ({after / before:.0%})")
    with torch.inference_mode():
        module(*example)  # fails here, not at export, if pruning broke the graph
    return TorchArtifact(module, art.specs, art.output_names)


@dataclass
class PruneMagnitude:
    """Unstructured magnitude pruning: zero the smallest ``amount`` of each weight tensor. Honest note: dense
    kernels do the same work on zeros, so this gives no speed-up on CPU; it helps only compression."""

    amount: float = 0.5

    def validate(self) -> None:
        if not 0.0 < self.amount < 1.0:
            raise OptimizeError(f"prune-magnitude: amount must be between 0 and 1, not {self.amount}")


def _zero_smallest(w: np.ndarray, amount: float) -> np.ndarray:
    k = round(w.size * amount)
    if k == 0:
        return w
    flat = np.abs(w).ravel()
    idx = np.argsort(flat, kind="stable")[:k]
    out = w.copy().ravel()
    out[idx] = 0
    return out.reshape(w.shape)


@register("prune-magnitude", PruneMagnitude, "any", "zero the smallest weights (no CPU speed-up)")
def prune_magnitude(art: Artifact, cfg: PruneMagnitude, ctx: Context, out_dir: Path) -> Artifact:
    if isinstance(art, TorchArtifact):
        import torch

        module = copy.deepcopy(art.module)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                    m.weight.copy_(torch.from_numpy(_zero_smallest(m.weight.detach().numpy(), cfg.amount)))
        return TorchArtifact(module, art.specs, art.output_names)
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(art.path))
    weights = {
        n.input[1] for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1
    }
    for i, init in enumerate(model.graph.initializer):
        if init.name in weights and init.data_type == onnx.TensorProto.FLOAT:
            arr = _zero_smallest(numpy_helper.to_array(init), cfg.amount)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    out = out_file(out_dir)
    onnx.save_model(model, str(out))
    return OnnxArtifact(out)


@dataclass
class Finetune:
    """Short recovery training after pruning. With ``function = "pkg.mod:fn"``, calls ``fn(module, data)``
    (data: dict of arrays, with ``labels`` if given) and uses the module it returns (or the same one).
    Otherwise trains on the train data: cross-entropy against ``labels`` when present, else distillation
    (MSE) towards the unpruned source model's outputs."""

    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 32
    function: str = ""

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise OptimizeError("finetune: epochs >= 0, batch_size >= 1 and lr > 0 please")


@register("finetune", Finetune, "torch", "short recovery training (labels or distillation)")
def finetune(art: TorchArtifact, cfg: Finetune, ctx: Context, out_dir: Path) -> TorchArtifact:
    import torch

    # Labels are used only from --train-data: the calibration data defaults to the evaluation data,
    # and training on the labels the accuracy gate is measured on would grade the variant on its homework.
    data = ctx.train or ctx.calibration
    labels = data.labels if ctx.train is not None else None
    if ctx.train is None:
        ctx.log("finetune: no --train-data: distilling towards the unpruned model on the calibration inputs")
    module = copy.deepcopy(art.module)
    torch.manual_seed(ctx.seed)
    if cfg.function:
        modname, _, attr = cfg.function.partition(":")
        try:
            fn = getattr(importlib.import_module(modname), attr)
        except (ImportError, AttributeError) as e:
            raise OptimizeError(f"finetune: cannot find function {cfg.function!r} ({e})") from e
        arrays = dict(data.inputs)
        if labels is not None:
            arrays["labels"] = labels
        result = fn(module, arrays)
        module = result if result is not None else module
        return TorchArtifact(module.eval(), art.specs, art.output_names)
    names = [s.name for s in art.specs]
    inputs = [torch.from_numpy(np.ascontiguousarray(data.inputs[n])) for n in names]
    if labels is not None:
        targets = torch.from_numpy(labels.astype(np.int64))
        loss_fn: Any = torch.nn.functional.cross_entropy
    else:
        if ctx.reference_module is None:
            raise OptimizeError(
                "finetune: no labels and no source module to distil from; give --train-data with labels"
            )
        with torch.inference_mode():
            ref = ctx.reference_module(*inputs)
        targets = (ref[0] if isinstance(ref, (tuple, list)) else ref).detach().clone()
        loss_fn = torch.nn.functional.mse_loss
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(ctx.seed)
    n = len(targets)
    module.train()
    steps = -(-n // cfg.batch_size)
    with ctx.log.task(
        f"fine-tuning ({cfg.epochs} epochs x {steps} batches)", total=cfg.epochs * steps
    ) as task:
        for epoch in range(cfg.epochs):
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for i in range(0, n, cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                opt.zero_grad()
                out = module(*[x[idx] for x in inputs])
                out = out[0] if isinstance(out, (tuple, list)) else out
                loss = loss_fn(out, targets[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                task.advance()
            if cfg.epochs <= 10 or (epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs:
                ctx.log(f"finetune: epoch {epoch + 1}/{cfg.epochs} loss {total / n:.4f}")
    return TorchArtifact(module.eval(), art.specs, art.output_names)
