"""graph-optimize's CPU rewrites on small real graphs: each one keeps the outputs and removes what it says."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ortserve.optimize.steps.onnx_steps import drop_nan_guards

F = TensorProto.FLOAT


def attention_probs(mask_fill: float) -> onnx.ModelProto:
    """p = Softmax(scores + Where(keep, 0, fill)); out = Where(IsNaN(p), 0, p) @ v, as PyTorch's SDPA
    exports it (keep: bool [b, 1, s] broadcast over the rows)."""
    nodes = [
        helper.make_node("Where", ["keep", "zero", "fill"], ["mask"]),
        helper.make_node("Add", ["scores", "mask"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("IsNaN", ["p"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "p"], ["safe"]),
        helper.make_node("MatMul", ["safe", "v"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "attn",
        [
            helper.make_tensor_value_info("scores", F, ["b", 4, 4]),
            helper.make_tensor_value_info("keep", TensorProto.BOOL, ["b", 1, 4]),
            helper.make_tensor_value_info("v", F, ["b", 4, 3]),
        ],
        [helper.make_tensor_value_info("out", F, ["b", 4, 3])],
        [
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(mask_fill, np.float32), "fill"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def feeds(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    keep = rng.random((3, 1, 4)) > 0.3
    keep[:, :, 0] = True  # every row keeps a key, as a padded batch does
    return {
        "scores": rng.standard_normal((3, 4, 4)).astype(np.float32),
        "keep": keep,
        "v": rng.standard_normal((3, 4, 3)).astype(np.float32),
    }


def test_a_finite_mask_drops_the_guard_and_keeps_the_outputs():
    model = attention_probs(float(np.finfo(np.float32).min))
    before = run(model, feeds())
    assert drop_nan_guards(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "IsNaN" not in ops and ops.count("Where") == 1  # the mask's Where stays
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(run(model, feeds()), before)


@pytest.mark.parametrize("fill", [float("-inf"), float("nan")])
def test_a_mask_that_can_make_a_row_nan_keeps_the_guard(fill):
    model = attention_probs(fill)
    assert drop_nan_guards(model) == 0
    assert [n.op_type for n in model.graph.node].count("IsNaN") == 1
    # and the guard matters there: a fully masked row is 0, not NaN
    f = feeds()
    f["keep"][0] = False
    assert np.isfinite(run(model, f)).all()


def test_token_states_are_compared_on_real_tokens_only():
    from ortserve.optimize.validate import compare

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 6, 8)).astype(np.float32)
    mask = np.ones((4, 6), np.int64)
    mask[:, 4:] = 0  # two padding positions per row
    cand = ref.copy()
    cand[:, 4:] = rng.standard_normal((4, 2, 8))  # padding states differ entirely: no one reads them
    tokens = compare([ref], [cand], inputs={"attention_mask": mask})
    assert tokens["cosine"] == pytest.approx(1.0) and tokens["cosine_over"].startswith("real tokens")
    flat = compare([ref], [cand])  # without the mask: flattened rows, padding included
    assert flat["cosine"] < 0.9 and flat["cosine_over"] == "rows"
    cand[:, :4] *= -1  # a real token that changes is seen
    assert compare([ref], [cand], inputs={"attention_mask": mask})["cosine"] == pytest.approx(-1.0)
