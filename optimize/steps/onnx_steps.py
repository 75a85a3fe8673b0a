"""Steps on ONNX files: graph-optimize and fp16 (the quantizers are in :mod:`.quantize`), and what they share:
saving a model reproducibly, keeping ONNX Runtime's root-logger chatter quiet."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.optimize.artifacts import OnnxArtifact
from ortserve.optimize.context import Context
from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.steps.registry import out_file, register

__all__ = ["Fp16", "GraphOptimize", "copy_onnx", "quiet_root_logger", "residual_add_to_sum", "save_model"]


_LEVELS = ("basic", "extended", "all")


def save_model(model: Any, path: Path) -> None:
    import onnx

    # Large models (transformers) need external data; the name is fixed so the bytes are reproducible.
    if model.ByteSize() > 1_800_000_000:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization warns through the root logger (e.g. 'consider pre-processing'); the report
    says what was done, so keep those lines off the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@dataclass
class GraphOptimize:
    """ONNX Runtime offline graph optimization (``level``: basic, extended, or all, which adds layout transforms
    specific to this CPU), plus rewrites measured to pay off on CPU:

    - ``skip_layernorm = false`` (default): a residual ``Add`` feeding ``LayerNormalization`` becomes ``Sum``,
      so that ONNX Runtime does not fuse the pair into ``SkipLayerNormalization``, whose CPU kernel measured
      ~5x slower than Add + LayerNormalization on this machine (onnxruntime 1.32; 8x128x384 fp32).
    - ``fuse_attention``: ONNX Runtime's BERT fusions (Attention, EmbedLayerNormalization; for graphs from the
      TorchScript exporter), ``auto`` for transformers named by the source (a transformers directory).
      Dynamic INT8 then makes Attention a QAttention.
    - ``nan_guards = false`` (default): the guard PyTorch's scaled-dot-product attention exports around each
      softmax, ``Where(IsNaN(p), 0, p)`` with ``p = Softmax(scores + mask)``, is dropped when the mask is a
      finite constant choice (``Where(keep, 0, -3.4e38)``, what transformers builds): a row of finite
      scores plus a finite mask is never NaN, so the guard never fires, yet it costs two passes over every
      attention matrix (~17% of all-MiniLM-L6-v2's INT8 time on this machine)."""

    level: str = "extended"
    skip_layernorm: bool = False
    nan_guards: bool = False
    fuse_attention: str = "off"  # off | auto | on
    num_heads: int = 0
    hidden_size: int = 0

    def validate(self) -> None:
        if self.level not in _LEVELS:
            raise OptimizeError(
                f"graph-optimize: level must be one of {', '.join(_LEVELS)}, not {self.level!r}"
            )
        if self.fuse_attention not in ("auto", "on", "off"):
            raise OptimizeError(
                f"graph-optimize: fuse_attention must be auto, on or off, not {self.fuse_attention!r}"
            )


def transformer_fuse(
    src: Path, dst: Path, ctx: Context, num_heads: int = 0, hidden_size: int = 0
) -> dict[str, int]:
    """Fuse attention with ONNX Runtime's transformer optimizer (SkipLayerNormalization left out, see
    :class:`GraphOptimize`); returns the fused-op counts."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    heads = num_heads or int(ctx.hints.get("num_heads", 0))
    hidden = hidden_size or int(ctx.hints.get("hidden_size", 0))
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    with quiet_root_logger():
        m = optimize_model(
            str(src),
            model_type="bert",
            num_heads=heads,
            hidden_size=hidden,
            opt_level=0,
            optimization_options=options,
        )
    stats = {k: int(v) for k, v in m.get_fused_operator_statistics().items() if v}
    m.topological_sort()
    model = m.model
    domains = {n.domain for n in model.graph.node}
    if "com.microsoft" in domains and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    save_model(model, dst)
    return stats


def residual_add_to_sum(model: Any) -> int:
    """Rewrite ``Add(a, b) -> LayerNormalization`` (both operands computed, i.e. a residual connection) as
    ``Sum(a, b)``; returns how many. Same arithmetic, but ONNX Runtime's SkipLayerNormalization fusion only
    matches Add."""
    consts = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for node in model.graph.node:
        if node.op_type != "LayerNormalization":
            continue
        add = producer.get(node.input[0])
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
            continue
        if any(
            i in consts or (producer.get(i) is not None and producer[i].op_type == "Constant")
            for i in add.input
        ):
            continue
        add.op_type = "Sum"
        count += 1
    return count


def _finite_scalar(model: Any, name: str, producer: dict[str, Any]) -> float | None:
    """The value of a scalar constant (initializer or Constant node) when it is finite, else None."""
    import math

    import numpy as np
    from onnx import helper, numpy_helper

    array: Any = None
    for init in model.graph.initializer:
        if init.name == name:
            array = numpy_helper.to_array(init)
            break
    else:
        node = producer.get(name)
        if node is None or node.op_type != "Constant":
            return None
        for attr in node.attribute:  # value (a tensor) or value_float
            if attr.name == "value":
                array = numpy_helper.to_array(attr.t)
            elif attr.name == "value_float":
                array = np.array(helper.get_attribute_value(attr), np.float32)
        if array is None:
            return None
    if array.size != 1 or array.dtype.kind != "f":
        return None
    value = float(array.reshape(-1)[0])
    return value if math.isfinite(value) else None


def drop_nan_guards(model: Any) -> int:
    """Remove ``Where(IsNaN(p), 0, p)`` after ``p = Softmax(Add(scores, Where(c, a, b)))`` with ``a``, ``b``
    finite scalar constants (see :class:`GraphOptimize`); returns how many."""
    producer = {o: n for n in model.graph.node for o in n.output}
    users: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in model.graph.output}
    drop: set[int] = set()
    rename: dict[str, str] = {}
    for where in model.graph.node:
        if where.op_type != "Where" or len(where.input) != 3:
            continue
        isnan, zero, probs = (producer.get(where.input[0]), where.input[1], where.input[2])
        softmax = producer.get(probs)
        if isnan is None or isnan.op_type != "IsNaN" or isnan.input[0] != probs or softmax is None:
            continue
        if softmax.op_type != "Softmax" or _finite_scalar(model, zero, producer) != 0.0:
            continue
        add = producer.get(softmax.input[0])
        if add is None or add.op_type != "Add" or where.output[0] in outputs:
            continue
        masks = [producer.get(i) for i in add.input]
        if not any(
            m is not None
            and m.op_type == "Where"
            and all(_finite_scalar(model, x, producer) is not None for x in m.input[1:])
            for m in masks
        ):
            continue
        rename[where.output[0]] = probs
        drop.add(id(where))
        if all(id(u) == id(where) for u in users.get(isnan.output[0], [])):
            drop.add(id(isnan))
    if not rename:
        return 0
    kept = [n for n in model.graph.node if id(n) not in drop]
    for n in kept:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(rename)


@register("graph-optimize", GraphOptimize, "onnx", "ONNX Runtime graph optimization + CPU-friendly rewrites")
def graph_optimize(art: OnnxArtifact, cfg: GraphOptimize, ctx: Context, out_dir: Path) -> OnnxArtifact:
    import onnx
    import onnxruntime as ort

    src = art.path
    out = out_file(out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        model = onnx.load(str(src), load_external_data=False)
        if cfg.fuse_attention == "on" or (cfg.fuse_attention == "auto" and _is_transformer(ctx, model)):
            fused = Path(tmp) / "fused.onnx"
            stats = transformer_fuse(src, fused, ctx, cfg.num_heads, cfg.hidden_size)
            ctx.log(f"graph-optimize: transformer fusions {stats or 'none found'}")
            src = fused
        # Before ONNX Runtime's own pass, which would fuse SkipLayerNormalization at level extended.
        model = onnx.load(str(src))
        rewritten = False
        if not cfg.skip_layernorm and (n := residual_add_to_sum(model)):
            ctx.log(f"graph-optimize: {n} residual Add -> Sum (keeps SkipLayerNormalization out)")
            rewritten = True
        if not cfg.nan_guards and (n := drop_nan_guards(model)):
            ctx.log(f"graph-optimize: {n} softmax NaN guard(s) dropped (finite attention mask)")
            rewritten = True
        if rewritten:
            src = Path(tmp) / "rewritten.onnx"
            save_model(model, src)
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[cfg.level]
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        so.intra_op_num_threads = 1
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        # Re-save through onnx so the file has one canonical serialization.
        save_model(onnx.load(str(Path(tmp) / "opt.onnx")), out)
    return OnnxArtifact(out)


def _is_transformer(ctx: Context, model: Any) -> bool:
    if ctx.hints.get("family") == "transformer":
        return True
    ops = {n.op_type for n in model.graph.node}
    return {"Softmax", "MatMul", "LayerNormalization"} <= ops and "Conv" not in ops


@dataclass
class Fp16:
    """Weights and compute in float16, inputs and outputs kept in their original types. On CPUs without
    native fp16 kernels this mostly halves the file size rather than the latency."""

    keep_io_types: bool = True
    op_block_list: list[str] = field(default_factory=list)


@register("fp16", Fp16, "onnx", "float16 weights and compute, IO types kept")
def fp16(art: OnnxArtifact, cfg: Fp16, ctx: Context, out_dir: Path) -> OnnxArtifact:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = out_file(out_dir)
    model = onnx.load(str(art.path))
    kwargs: dict[str, Any] = {"keep_io_types": cfg.keep_io_types}
    if cfg.op_block_list:
        kwargs["op_block_list"] = cfg.op_block_list
    save_model(convert_float_to_float16(model, **kwargs), out)
    return OnnxArtifact(out)


def copy_onnx(src: Path, dst_dir: Path) -> OnnxArtifact:
    """Copy an ONNX file (and its external data, re-embedded when small) as ``model.onnx``."""
    import onnx

    out = out_file(dst_dir)
    model = onnx.load(str(src))
    save_model(model, out)
    if not out.exists():  # pragma: no cover - defensive
        shutil.copyfile(src, out)
    return OnnxArtifact(out)
