"""What the optimize tests share: a small real MLP built with onnx.helper, and helpers to look at results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--batch-sizes", "1,8", "--bench-seconds", "0.02", "--quiet"]


def mlp_model(seed: int = 0, hidden: int = 48) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A 64-48-10 MLP (Gemm/Relu/Gemm + softmax/argmax outputs, unnamed nodes, like hand-made exports)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((64, hidden)) * 0.2).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((hidden, 10)) * 0.3).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def versions(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir()) if model_dir.exists() else []


def ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}
