"""optimize's steps and measurements on ONNX sources: quantization options, determinism, unusual graphs,
validation metrics, synthetic and loaded data."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ortserve.dtypes import TensorSpec
from ortserve.optimize.__main__ import main
from ortserve.optimize.specs import load_npz, synthetic_inputs
from ortserve.optimize.validate import compare
from tests.optimize.common import FAST


def test_same_inputs_twice_give_byte_identical_models(mlp, tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
model = "{mlp["model"]}"
name = "mlp"
[data]
eval = "{mlp["eval"]}"
[benchmark]
batch_sizes = [1]
seconds = 0.01
[[variants]]
name = "opt"
steps = [{{step = "graph-optimize"}}]
[[variants]]
name = "dyn"
steps = [{{step = "graph-optimize", level = "basic"}}, {{step = "quantize-dynamic"}}]
[[variants]]
name = "static-entropy"
steps = [{{step = "quantize-static", method = "entropy", samples = 64}}]
[[variants]]
name = "half"
steps = [{{step = "fp16"}}, {{step = "prune-magnitude", amount = 0.3}}]
""")
    blobs = []
    for run in ("a", "b"):
        repo = tmp_path / run
        assert (
            main(["--recipe", str(recipe), "--repo", str(repo), "--out", str(tmp_path / f"r{run}"), "-q"])
            == 0
        )
        blobs.append([(repo / "mlp" / v / "model.onnx").read_bytes() for v in "1234"])
    assert blobs[0] == blobs[1]
    assert len(set(blobs[0])) == 4


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_quantize_static_methods(mlp, tmp_path, method):
    out = tmp_path / "r"
    assert (
        main(
            [
                str(mlp["model"]),
                "--quantize",
                "static",
                "--calibration-method",
                method,
                "--data",
                str(mlp["eval"]),
                "--out",
                str(out),
                "--min-cosine",
                "0.98",
                *FAST,
            ]
        )
        == 0
    )
    v = json.loads((out / "report.json").read_text())["variants"][0]
    assert v["steps"][0]["params"]["method"] == method
    assert v["validation"]["top1_agreement"] > 0.9


def test_per_channel_option_changes_the_model(mlp, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
model = "{mlp["model"]}"
[benchmark]
batch_sizes = [1]
seconds = 0.01
[[variants]]
name = "pc"
steps = [{{step = "quantize-dynamic", per_channel = true}}]
[[variants]]
name = "pt"
steps = [{{step = "quantize-dynamic", per_channel = false}}]
""")
    repo = tmp_path / "m"
    assert (
        main(
            ["--recipe", str(recipe), "--repo", str(repo), "--name", "x", "--out", str(tmp_path / "o"), "-q"]
        )
        == 0
    )
    scales = []
    for v in "12":
        m = onnx.load(str(repo / "x" / v / "model.onnx"))
        scales.append(max(numpy_helper.to_array(i).size for i in m.graph.initializer if "scale" in i.name))
    assert scales[0] > 1 and scales[1] == 1  # a scale per output channel vs one per tensor


def test_dynamic_quantization_of_gemms_sharing_a_transposed_weight(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "shared.onnx")
    code = main([str(tmp_path / "shared.onnx"), "--quantize", "dynamic", "--out", str(tmp_path / "r"), *FAST])
    assert code in (0, 1)  # built and validated (accepted or gated), not a crash
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["variants"][0]["validation"]["cosine"] > 0.9


def test_a_one_dimensional_output_with_labels_is_measured(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0, axes=[1])],
        "regression",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "reg.onnx")
    x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, labels=np.zeros(20, np.int64))
    code = main(
        [
            str(tmp_path / "reg.onnx"),
            "--fp32",
            "--data",
            str(tmp_path / "d.npz"),
            "--out",
            str(tmp_path / "r"),
            *FAST,
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "top1_agreement" not in report["variants"][0]["validation"]


def test_validation_metrics_table():
    ref = [np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], np.float32)]
    same = compare(ref, ref, np.array([0, 1]))
    assert same["max_abs_err"] == 0 and same["cosine"] == pytest.approx(1.0)
    assert same["top1_agreement"] == 1.0 and same["accuracy_drop"] == 0.0
    flipped = [np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], np.float32)]
    m = compare(ref, flipped, np.array([0, 1]))
    assert m["top1_agreement"] == 0.5
    assert m["accuracy_drop"] == pytest.approx(50.0)
    assert m["max_abs_err"] == pytest.approx(2.0) and m["max_abs_err_at"] == [1, 1]
    assert m["cosine"] == pytest.approx(0.5)
    assert "error" in compare(ref, [np.zeros((2, 4), np.float32)])


def test_synthetic_inputs_are_seeded_and_sensible():
    specs = [
        TensorSpec.of("input_ids", "int64", ("batch", "sequence")),
        TensorSpec.of("attention_mask", "int64", ("batch", "sequence")),
        TensorSpec.of("token_type_ids", "int64", ("batch", "sequence")),
        TensorSpec.of("x", "float32", ("batch", 3)),
    ]
    a = synthetic_inputs(specs, 4, {"sequence": 7}, seed=3)
    b = synthetic_inputs(specs, 4, {"sequence": 7}, seed=3)
    assert a.synthetic and a.inputs["input_ids"].shape == (4, 7)
    assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert a.inputs["input_ids"].min() >= 0 and a.inputs["input_ids"].max() < 100
    assert (a.inputs["attention_mask"] == 1).all() and (a.inputs["token_type_ids"] == 0).all()
    assert a.inputs["x"].dtype == np.float32


def test_npz_dtype_is_checked(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([["a", "b"]]))
    from ortserve.optimize.errors import OptimizeError

    with pytest.raises(OptimizeError, match="wants float32"):
        load_npz(tmp_path / "d.npz", [TensorSpec.of("x", "float32", ("batch", 2))])
