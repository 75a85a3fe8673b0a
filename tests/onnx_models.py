"""Small real ONNX models built with onnx.helper for the tests, and a helper to publish them
into a repository folder through ortserve.repository (with a manifest, like optimize does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ortserve.repository import publish_version, write_model_config

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def addmul(offset: float = 0.0) -> onnx.ModelProto:
    """sum = a + b + offset, prod = a * b; a, b float32 [batch, 4]. The offset tells versions apart."""
    return _model(
        [
            helper.make_node("Add", ["a", "b"], ["s0"]),
            helper.make_node("Add", ["s0", "offset"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["prod"]),
        ],
        [
            helper.make_tensor_value_info("a", F, ["batch", 4]),
            helper.make_tensor_value_info("b", F, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("sum", F, ["batch", 4]),
            helper.make_tensor_value_info("prod", F, ["batch", 4]),
        ],
        [numpy_helper.from_array(np.array(offset, dtype=np.float32), "offset")],
    )


def pair() -> onnx.ModelProto:
    """out = x + y with x [batch, n], y [batch, m]: ONNX Runtime fails at run time when n != m (and neither is 1)."""
    return _model(
        [helper.make_node("Add", ["x", "y"], ["out"])],
        [
            helper.make_tensor_value_info("x", F, ["batch", "n"]),
            helper.make_tensor_value_info("y", F, ["batch", "m"]),
        ],
        [helper.make_tensor_value_info("out", F, ["batch", "k"])],
    )


def fixed() -> onnx.ModelProto:
    """No batch dimension: y = x * 2 with x float32 [2, 3]."""
    return _model(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        [helper.make_tensor_value_info("x", F, [2, 3])],
        [helper.make_tensor_value_info("y", F, [2, 3])],
    )


def strings() -> onnx.ModelProto:
    """Identity on a string tensor [batch]."""
    return _model(
        [helper.make_node("Identity", ["text"], ["same"])],
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["batch"])],
    )


def publish(
    repo: Path,
    name: str,
    version: int | str,
    model: onnx.ModelProto,
    config: str | None = None,
    manifest: bool = True,
) -> Path:
    """Publish ``model`` as <repo>/<name>/<version> (replacing one that is there), after writing
    ``config`` (config.toml text, checked) when given; returns the version folder."""
    if config is not None:
        write_model_config(Path(repo) / name, config)
    return publish_version(
        Path(repo), name, model.SerializeToString(), version=version, manifest=manifest, replace=True
    )


def slow(matmuls: int = 24, size: int = 256) -> onnx.ModelProto:
    """y = x @ W @ W ... (``matmuls`` times) with x float32 [batch, size, size]: tens of milliseconds
    per row, for tests that need a request to still be running after a short timeout."""
    w = (np.eye(size) * 0.5 + 0.5 / size).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(matmuls):
        out = "y" if i == matmuls - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "w"], [out]))
        prev = out
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", F, ["batch", size, size])],
        [helper.make_tensor_value_info("y", F, ["batch", size, size])],
        [numpy_helper.from_array(w, "w")],
    )


def classifier(shift: int = 0, fail_above: float | None = None) -> onnx.ModelProto:
    """label = (argmax(x) + shift) % 4 and scores = x, with x float32 [batch, 4]: a 4-class classifier
    whose right answer is argmax(x). ``shift`` makes a version answer wrong; with ``fail_above``, ONNX
    Runtime fails (a Reshape to [-1, 5]) on a request of one row whose x[0, 0] is above it, so a version
    errs on the share of inputs above that value (serve it with batching off: a failure fails its batch)."""
    i64 = TensorProto.INT64
    inits = [numpy_helper.from_array(np.array(4, dtype=np.int64), "four")]
    nodes = []
    source = "x"
    if fail_above is not None:
        inits += [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array(fail_above, dtype=np.float32), "limit"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
            numpy_helper.from_array(np.array([4], dtype=np.int64), "four_1d"),
        ]
        nodes += [
            helper.make_node("Slice", ["x", "zero", "one", "one"], ["first"]),  # x[:, 0:1]
            helper.make_node("ReduceMax", ["first"], ["top"], keepdims=0),
            helper.make_node("Greater", ["top", "limit"], ["above"]),
            helper.make_node("Cast", ["above"], ["extra"], to=i64),
            helper.make_node("Add", ["four_1d", "extra"], ["width"]),
            helper.make_node("Concat", ["minus_one", "width"], ["shape"], axis=0),
            helper.make_node("Reshape", ["x", "shape"], ["checked"]),
        ]
        source = "checked"
    inits.append(numpy_helper.from_array(np.array(shift, dtype=np.int64), "shift"))
    nodes += [
        helper.make_node("ArgMax", [source], ["top1"], axis=1, keepdims=0),
        helper.make_node("Add", ["top1", "shift"], ["shifted"]),
        helper.make_node("Mod", ["shifted", "four"], ["label"]),
        helper.make_node("Identity", [source], ["scores"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", F, ["batch", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("scores", F, ["batch", 4]),
        ],
        inits,
    )


def batch_probe() -> onnx.ModelProto:
    """Tells what batch ONNX Runtime ran: x float32 [batch, 4]; ``seen`` = x + the rows in the run
    (padding included), ``total`` = every row the sum over the run's rows (padding rows add nothing
    only when they are zeros)."""
    return _model(
        [
            helper.make_node("Mul", ["x", "zero"], ["x0"]),
            helper.make_node("Add", ["x0", "one"], ["ones"]),
            helper.make_node("ReduceSum", ["ones", "axis0"], ["rows"], keepdims=1),
            helper.make_node("Add", ["x", "rows"], ["seen"]),
            helper.make_node("ReduceSum", ["x", "axis0"], ["sum0"], keepdims=1),
            helper.make_node("Add", ["x0", "sum0"], ["total"]),
        ],
        [helper.make_tensor_value_info("x", F, ["batch", 4])],
        [
            helper.make_tensor_value_info("seen", F, ["batch", 4]),
            helper.make_tensor_value_info("total", F, ["batch", 4]),
        ],
        [
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
            numpy_helper.from_array(np.array(1, np.float32), "one"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ],
    )
