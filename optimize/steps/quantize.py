"""The INT8 quantization steps on ONNX files: quantize-dynamic (weights quantized offline, activations at
run time) and quantize-static (QDQ, calibrated on the calibration data)."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.optimize.artifacts import OnnxArtifact
from ortserve.optimize.context import Context, Task
from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.steps.onnx_steps import quiet_root_logger, save_model
from ortserve.optimize.steps.registry import out_file, register

__all__ = ["QuantizeDynamic", "QuantizeStatic"]


_QTYPES = ("int8", "uint8")


def _name_nodes(model: Any) -> None:
    """Give unnamed nodes unique, deterministic names: the quantizers derive new node names from them."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)


def _gemm_to_matmul(model: Any) -> int:
    """Rewrite ``Gemm(x, W, b)`` (no transA, alpha=beta=1, constant W) as MatMul + Add, which dynamic
    quantization supports (it has no integer Gemm); returns how many were rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    new_nodes = []
    count = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type == "Gemm"
            and node.input[1] in inits
            and attrs.get("transA", 0) == 0
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
        ):
            if attrs.get("transB", 0):
                wname = node.input[1] + "_T"
                if wname not in inits:  # a weight shared by several Gemms is transposed once
                    w = np.ascontiguousarray(numpy_helper.to_array(inits[node.input[1]]).T)
                    inits[wname] = numpy_helper.from_array(w, wname)
                    model.graph.initializer.append(inits[wname])
            else:
                wname = node.input[1]
            mm_out = node.output[0] + "_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
            new_nodes.append(
                helper.make_node("MatMul", [node.input[0], wname], [mm_out], name=node.name + "_MatMul")
            )
            if len(node.input) > 2 and node.input[2]:
                new_nodes.append(
                    helper.make_node(
                        "Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_Add"
                    )
                )
            count += 1
        else:
            new_nodes.append(node)
    if count:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        used = {i for n in model.graph.node for i in n.input}
        keep = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        onnx.checker.check_model(model)
    return count


@dataclass
class QuantizeDynamic:
    """Dynamic INT8: weights quantized offline, activations at run time. ``per_channel`` and ``reduce_range``
    default to what suits this CPU (per-channel always; reduce_range only on x86 without VNNI)."""

    per_channel: bool | None = None
    reduce_range: bool | None = None
    weight_type: str = "int8"
    op_types: list[str] = field(default_factory=lambda: ["MatMul", "Attention", "LSTM", "GRU"])
    exclude_nodes: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.weight_type not in _QTYPES:
            raise OptimizeError(
                f"quantize-dynamic: weight_type must be int8 or uint8, not {self.weight_type!r}"
            )


def _auto_reduce_range(ctx: Context, value: bool | None) -> bool:
    if value is not None:
        return value
    machine = str(ctx.cpu.get("machine", "")).lower()
    return machine in ("x86_64", "amd64") and not ctx.cpu.get("vnni", False)


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


@register("quantize-dynamic", QuantizeDynamic, "onnx", "dynamic INT8 quantization (weights offline)")
def quantize_dynamic(art: OnnxArtifact, cfg: QuantizeDynamic, ctx: Context, out_dir: Path) -> OnnxArtifact:
    import onnx
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    out = out_file(out_dir)
    model = onnx.load(str(art.path))
    _name_nodes(model)
    if "MatMul" in cfg.op_types:
        _gemm_to_matmul(model)
    # Resolve the automatic settings into the config, so that the manifest records what was used.
    per_channel = cfg.per_channel = True if cfg.per_channel is None else cfg.per_channel
    reduce_range = cfg.reduce_range = _auto_reduce_range(ctx, cfg.reduce_range)
    with quiet_root_logger():
        ort_quantize_dynamic(
            model,
            str(out),
            op_types_to_quantize=cfg.op_types,
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=_qtype(cfg.weight_type),
            nodes_to_exclude=cfg.exclude_nodes or None,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    save_model(onnx.load(str(out)), out)
    return OnnxArtifact(out)


@dataclass
class QuantizeStatic:
    """Static INT8 in QDQ format, calibrated on the calibration data (MinMax, Entropy or Percentile), after
    ONNX Runtime's recommended pre-processing (symbolic shape inference + optimization). Output heads that are
    not matrix products (Softmax, ArgMax...) stay in float."""

    method: str = "minmax"  # minmax | entropy | percentile
    per_channel: bool = True
    reduce_range: bool | None = None
    activation_type: str = "uint8"
    weight_type: str = "int8"
    samples: int = 128
    batch_size: int = 16
    percentile: float = 99.999
    preprocess: bool = True
    op_types: list[str] = field(default_factory=list)
    exclude_nodes: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.method not in ("minmax", "entropy", "percentile"):
            raise OptimizeError(
                f"quantize-static: method must be minmax, entropy or percentile, not {self.method!r}"
            )
        if self.activation_type not in _QTYPES or self.weight_type not in _QTYPES:
            raise OptimizeError("quantize-static: activation_type and weight_type must be int8 or uint8")
        if self.samples < 1 or self.batch_size < 1:
            raise OptimizeError("quantize-static: samples and batch_size must be at least 1")


def _output_heads(model: Any) -> list[str]:
    """Nodes other than Conv/MatMul/Gemm that write a graph output (Softmax, ArgMax, Sigmoid...): left in float
    so that, e.g., probabilities still sum to one; the compute before them is quantized."""
    outputs = {o.name for o in model.graph.output}
    heavy = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
    return [n.name for n in model.graph.node if n.op_type not in heavy and outputs & set(n.output)]


class _Reader:
    """A CalibrationDataReader over batches of the calibration data; each batch read moves ``task`` on."""

    def __init__(self, batches: list[dict[str, Any]], task: Task | None = None) -> None:
        self._it = iter(batches)
        self._task = task

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is not None and self._task is not None:
            self._task.advance()
        return batch


@register("quantize-static", QuantizeStatic, "onnx", "static INT8 (QDQ) with calibration")
def quantize_static(art: OnnxArtifact, cfg: QuantizeStatic, ctx: Context, out_dir: Path) -> OnnxArtifact:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = out_file(out_dir)
    cfg.reduce_range = _auto_reduce_range(ctx, cfg.reduce_range)  # recorded in the manifest as resolved
    data = ctx.calibration.head(cfg.samples)
    ctx.log(f"quantize-static: calibrating ({cfg.method}) on {data.rows} rows from {data.source}")
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = art.path
        if cfg.preprocess:
            pre = Path(tmp) / "pre.onnx"
            try:
                # When symbolic shape inference gives up, ONNX Runtime saves its partial model into
                # the current directory: keep that litter in the temp folder.
                with contextlib.chdir(tmp):
                    quant_pre_process(str(Path(src).resolve()), str(pre.resolve()), skip_symbolic_shape=False)
            except Exception:  # symbolic shape inference does not know every op; plain ONNX inference does
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[cfg.method]
        extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if cfg.method == "percentile":
            extra["CalibPercentile"] = cfg.percentile
        model = onnx.load(str(src))
        _name_nodes(model)
        batches = data.batches(cfg.batch_size)
        with quiet_root_logger(), ctx.log.task(f"calibration ({cfg.method})", total=len(batches)) as task:
            ort_quantize_static(
                model,
                str(Path(tmp) / "q.onnx"),
                _Reader(batches, task),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=cfg.op_types or None,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                activation_type=_qtype(cfg.activation_type),
                weight_type=_qtype(cfg.weight_type),
                nodes_to_exclude=[*cfg.exclude_nodes, *_output_heads(model)] or None,
                calibrate_method=method,
                extra_options=extra,
            )
        save_model(onnx.load(str(Path(tmp) / "q.onnx")), out)
    return OnnxArtifact(out)
