"""optimize on ONNX sources: each step on a small model built here, validation metrics, gates, publishing,
determinism, clean errors, and the CLI end to end into a repository the server then serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ortserve.optimize.__main__ import main
from ortserve.optimize.specs import TensorSpec, load_npz, synthetic_inputs
from ortserve.optimize.validate import compare
from ortserve.repository.manifest import read_manifest, verify_manifest

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


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mlp")
    model, w = mlp_model()
    onnx.save(model, d / "mlp.onnx")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 64)).astype(np.float32)
    logits = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
    np.savez(d / "eval.npz", input=x, labels=logits.argmax(1))
    np.savez(d / "wrong.npz", features=x)
    np.savez(d / "badshape.npz", input=x[:, :32])
    return {
        "model": d / "mlp.onnx",
        "eval": d / "eval.npz",
        "wrong": d / "wrong.npz",
        "badshape": d / "badshape.npz",
    }


def versions(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir()) if model_dir.exists() else []


def ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_help_imports_no_heavy_library():
    code = "import sys, ortserve.optimize.__main__ as m; m.build_parser(); print(sorted(k for k in ('onnxruntime', 'torch', 'onnx') if k in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_text = subprocess.run(
        [sys.executable, "-m", "ortserve.optimize", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--quantize dynamic --repo models --name digits" in help_text  # the worked example


def test_list_steps(capsys):
    assert main(["--list-steps"]) == 0
    out = capsys.readouterr().out
    for step in (
        "export",
        "graph-optimize",
        "quantize-dynamic",
        "quantize-static",
        "fp16",
        "prune-structured",
        "prune-magnitude",
        "finetune",
    ):
        assert step in out


def test_cli_publishes_variants_with_manifest_and_report(mlp, tmp_path):
    repo, out = tmp_path / "models", tmp_path / "report"
    code = main(
        [
            str(mlp["model"]),
            "--quantize",
            "dynamic",
            "--quantize",
            "static",
            "--quantize",
            "fp16",
            "--data",
            str(mlp["eval"]),
            "--repo",
            str(repo),
            "--name",
            "mlp",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    model_dir = repo / "mlp"
    assert versions(model_dir) == ["1", "2", "3"]
    config = (model_dir / "config.toml").read_text()
    assert 'default_version = "1"' in config
    for v, variant in zip("123", ["int8-dynamic", "int8-static", "fp16"], strict=True):
        manifest = read_manifest(model_dir / v)
        assert manifest is not None
        verify_manifest(model_dir / v, manifest)
        assert manifest["variant"] == variant
        assert manifest["validation"]["cosine"] > 0.99
        assert set(manifest["benchmark"]["batches"]) == {"1", "8"}
        assert (
            manifest["benchmark"]["batches"]["8"]["p99_ms"] >= manifest["benchmark"]["batches"]["8"]["p50_ms"]
        )
        assert "features" in manifest["cpu"] and "onnxruntime" in manifest["libraries"]
        last = manifest["recipe"]["steps"][-1]
        assert last["step"] in ("quantize-dynamic", "quantize-static", "fp16")
        if last["step"].startswith("quantize"):  # automatic settings are recorded as resolved
            assert isinstance(last["params"]["reduce_range"], bool)
    # dynamic INT8 really quantized the Gemms (rewritten as MatMul), static is QDQ, fp16 kept IO types
    assert "MatMulInteger" in ops(model_dir / "1" / "model.onnx") or "DynamicQuantizeLinear" in ops(
        model_dir / "1" / "model.onnx"
    )
    assert "QuantizeLinear" in ops(model_dir / "2" / "model.onnx")
    x = np.load(mlp["eval"])["input"][:16]
    static = ort.InferenceSession(str(model_dir / "2" / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = static.run(["probabilities"], {"input": x})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # the Softmax head stayed float
    fp16 = onnx.load(str(model_dir / "3" / "model.onnx"))
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in fp16.graph.initializer)
    report = json.loads((out / "report.json").read_text())
    assert report["accepted"] == ["int8-dynamic", "int8-static", "fp16"]
    assert report["info"]["synthetic_data"] is False
    md = (out / "report.md").read_text()
    assert "| int8-dynamic |" in md and "accepted, version 1" in md
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]


def test_publishing_never_changes_default_version(mlp, tmp_path):
    repo = tmp_path / "models"
    model_dir = repo / "mlp"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(mlp["model"].read_bytes())
    config = 'default_version = "1"\nmax_batch_size = 8\n'
    (model_dir / "config.toml").write_text(config)
    assert (
        main(
            [
                str(model_dir / "1" / "model.onnx"),
                "--quantize",
                "dynamic",
                "--repo",
                str(repo),
                "--name",
                "mlp",
                "--out",
                str(tmp_path / "r"),
                *FAST,
            ]
        )
        == 0
    )
    assert versions(model_dir) == ["1", "2"]
    assert (model_dir / "config.toml").read_text() == config
    manifest = read_manifest(model_dir / "2")
    assert manifest is not None and manifest["validation"]["synthetic"] is True


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--min-cosine", "0.9999999"], "cosine"),
        (["--min-speedup", "50"], "speed-up"),
        (["--max-accuracy-drop", "-1"], "accuracy drop"),
    ],
)
def test_gates_reject_and_nothing_is_published(mlp, tmp_path, flags, reason):
    repo, out = tmp_path / "models", tmp_path / "r"
    code = main(
        [
            str(mlp["model"]),
            "--quantize",
            "dynamic",
            "--data",
            str(mlp["eval"]),
            "--repo",
            str(repo),
            "--name",
            "mlp",
            "--out",
            str(out),
            *flags,
            *FAST,
        ]
    )
    assert code == 1
    assert versions(repo / "mlp") == []
    report = json.loads((out / "report.json").read_text())
    assert report["accepted"] == []
    assert reason in report["variants"][0]["reasons"][0]
    assert "rejected: " + reason in (out / "report.md").read_text()


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
        TensorSpec("input_ids", "int64", ("batch", "sequence")),
        TensorSpec("attention_mask", "int64", ("batch", "sequence")),
        TensorSpec("token_type_ids", "int64", ("batch", "sequence")),
        TensorSpec("x", "float32", ("batch", 3)),
    ]
    a = synthetic_inputs(specs, 4, {"sequence": 7}, seed=3)
    b = synthetic_inputs(specs, 4, {"sequence": 7}, seed=3)
    assert a.synthetic and a.inputs["input_ids"].shape == (4, 7)
    assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert a.inputs["input_ids"].min() >= 0 and a.inputs["input_ids"].max() < 100
    assert (a.inputs["attention_mask"] == 1).all() and (a.inputs["token_type_ids"] == 0).all()
    assert a.inputs["x"].dtype == np.float32


def test_write_recipe_round_trips(mlp, tmp_path):
    recipe = tmp_path / "run.toml"
    assert (
        main(
            [
                str(mlp["model"]),
                "--quantize",
                "dynamic",
                "--min-cosine",
                "0.95",
                "--dim",
                "sequence=32",
                "--write-recipe",
                str(recipe),
                "-q",
            ]
        )
        == 0
    )
    text = recipe.read_text()
    assert 'step = "quantize-dynamic"' in text and "min_cosine = 0.95" in text
    from ortserve.optimize.recipe import load_recipe

    r = load_recipe(recipe)
    assert r.variants[0].name == "int8-dynamic" and r.dims == {"sequence": 32}
    assert r.gates.min_cosine == 0.95 and Path(r.model or "").resolve() == mlp["model"].resolve()


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p, t: [str(t / "missing.onnx"), "--quantize", "dynamic"], "not found"),
        (lambda p, t: ["nosuchpkg.nets:make", "--quantize", "dynamic"], "cannot import"),
        (lambda p, t: ["ortserve.optimize.errors:nothing_here", "--quantize", "dynamic"], "no callable"),
        (
            lambda p, t: [str(p["model"]), "--quantize", "static", "--calibration", str(p["wrong"])],
            "no array named",
        ),
        (lambda p, t: [str(p["model"]), "--quantize", "dynamic", "--data", str(p["badshape"])], "shape"),
        (lambda p, t: [str(p["model"]), "--quantize", "dynamic", "--data", str(t / "none.npz")], "not found"),
        (lambda p, t: [str(p["model"]), "--prune", "0.5"], "PyTorch source"),
        (lambda p, t: [str(p["model"])], "nothing to do"),
        (lambda p, t: [str(t / "notes.txt"), "--quantize", "dynamic"], "cannot tell"),
        (lambda p, t: [str(p["model"]), "--quantize", "dynamic", "--dim", "sequence"], "NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(mlp, tmp_path, capsys, make_args, message):
    repo = tmp_path / "models"
    code = main(
        [*make_args(mlp, tmp_path), "--repo", str(repo), "--name", "mlp", "--out", str(tmp_path / "o"), "-q"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and err.startswith("ortserve-optimize: error:")
    assert versions(repo / "mlp") == []


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ('steps = [{step = "quantize-turbo"}]', "unknown step 'quantize-turbo'"),
        ('steps = [{step = "quantize-dynamic", bits = 4}]', "unknown parameter 'bits'"),
        ('steps = [{step = "quantize-static", method = "magic"}]', "method must be"),
        ('steps = [{step = "quantize-dynamic", per_channel = "yes"}]', "wrong type"),
        # typos must not silently publish the untouched model or drop a gate
        ('step = [{step = "quantize-dynamic"}]', "unknown key 'step'"),
        ("", "'steps' must be a non-empty list"),
        ('steps = [{step = "quantize-dynamic"}]\ngates = {min_cosin = 0.9}', "unknown key 'min_cosin'"),
        (
            'steps = [{step = "quantize-dynamic"}]\ngates = {min_cosine = "high"}',
            "min_cosine must be a number",
        ),
        ('steps = [{step = "quantize-dynamic"}]\n[data]\nevaluation = "x.npz"', "unknown key 'evaluation'"),
    ],
)
def test_bad_recipe_is_exit_2(mlp, tmp_path, capsys, variant, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'model = "{mlp["model"]}"\n[[variants]]\nname = "v"\n{variant}\n')
    assert main(["--recipe", str(recipe), "-q"]) == 2
    assert message in capsys.readouterr().err


def test_npz_dtype_is_checked(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([["a", "b"]]))
    from ortserve.optimize.errors import OptimizeError

    with pytest.raises(OptimizeError, match="wants float32"):
        load_npz(tmp_path / "d.npz", [TensorSpec("x", "float32", ("batch", 2))])


def test_published_variants_are_served(mlp, tmp_path, start_server):
    from ortserve.client import Client

    repo = tmp_path / "models"
    assert (
        main(
            [
                str(mlp["model"]),
                "--quantize",
                "dynamic",
                "--quantize",
                "static",
                "--data",
                str(mlp["eval"]),
                "--repo",
                str(repo),
                "--name",
                "mlp",
                "--out",
                str(tmp_path / "o"),
                *FAST,
            ]
        )
        == 0
    )
    x = np.load(mlp["eval"])["input"][:4]
    expected = ort.InferenceSession(str(mlp["model"]), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    server = start_server(repo)
    with Client(server.target) as client:
        for version in ("1", "2"):
            got = client.predict("mlp", {"input": x}, version=version)
            np.testing.assert_allclose(got["logits"], expected[0], atol=0.15)
            np.testing.assert_array_equal(got["label"].shape, (4,))


def test_seed_threads_graph_optimize_and_quiet_flags(mlp, tmp_path, capsys):
    out = tmp_path / "r"
    args = [
        str(mlp["model"]),
        "--graph-optimize",
        "--seed",
        "7",
        "--threads",
        "1",
        "--out",
        str(out),
        "--batch-sizes",
        "1",
        "--bench-seconds",
        "0.01",
    ]
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["seed"] == 7 and report["baseline"]["benchmark"]["threads"] == 1
    assert [v["name"] for v in report["variants"]] == ["fp32-optimized"]
    assert report["variants"][0]["steps"][0]["step"] == "graph-optimize"
    assert main(args) == 0  # without --quiet: progress on stderr, a summary on stdout
    captured = capsys.readouterr()
    assert "ortserve-optimize: fp32-optimized: graph-optimize" in captured.err
    assert "fp32-optimized: accepted" in captured.out


def test_canary_flag_proposal_is_valid_flagd(tmp_path):
    from ortserve.optimize.pipeline import RunResult, VariantResult, _propose_canary
    from ortserve.rollout.flags import check_versions, parse_flags

    model_dir = tmp_path / "models" / "mlp"
    model_dir.mkdir(parents=True)
    (model_dir / "config.toml").write_text('default_version = "1"\n')
    variants = [
        VariantResult("slow", [], speedup={"8": 0.9}, accepted=True, version=2),
        VariantResult("int8-dynamic", [], speedup={"8": 1.7}, accepted=True, version=3),
        VariantResult("rejected", [], speedup={"8": 3.0}, accepted=False),
    ]
    result = RunResult(variants, {}, tmp_path, {"speedup_batch": 8})
    _propose_canary(result, model_dir, "mlp", tmp_path / "r")
    text = (tmp_path / "r" / "canary-flags.json").read_text()
    flags = parse_flags(text)
    check_versions(flags, {"mlp": {"1", "2", "3"}})
    spec = json.loads(text)["flags"]["mlp"]
    assert spec["variants"] == {"current": "1", "int8-dynamic": "3"}
    assert spec["targeting"]["fractional"] == [["current", 90], ["int8-dynamic", 10]]
    # nothing faster than the baseline: no proposal
    result.variants = variants[:1]
    _propose_canary(result, model_dir, "mlp", tmp_path / "none")
    assert not (tmp_path / "none" / "canary-flags.json").exists()


@pytest.mark.slow
def test_digits_demo_recipe_publishes_all_variants_in_time(tmp_path):
    """What `make serve` runs: demo version 1, then dynamic INT8, static INT8 and pruned variants (< 60 s)."""
    import time

    from ortserve.optimize.demo import build
    from ortserve.optimize.examples.digits import main as digits_main

    repo = tmp_path / "models"
    started = time.perf_counter()
    build(repo, quiet=True)
    assert digits_main(["--repo", str(repo), "--work", str(tmp_path / "build"), "--quiet"]) == 0
    assert time.perf_counter() - started < 60
    assert versions(repo / "digits") == ["1", "2", "3", "4"]
    report = json.loads((tmp_path / "build" / "report" / "report.json").read_text())
    assert report["accepted"] == ["int8-dynamic", "int8-static", "pruned50"]
    for v in report["variants"]:
        assert v["validation"]["accuracy_drop"] <= 1.0
    manifest = read_manifest(repo / "digits" / "4")
    assert manifest is not None and manifest["parent"] == "1"
    for v in "1234":  # every version answers with the same outputs, so routing between them is transparent
        outputs = [o.name for o in onnx.load(str(repo / "digits" / v / "model.onnx")).graph.output]
        assert outputs == ["logits", "probabilities", "label"]
    # a second run keeps what is there
    assert digits_main(["--repo", str(repo), "--work", str(tmp_path / "build"), "--quiet"]) == 0
    assert versions(repo / "digits") == ["1", "2", "3", "4"]


def test_a_failed_publish_leaves_the_default_pinned(mlp, tmp_path):
    from ortserve.optimize.errors import OptimizeError
    from ortserve.optimize.publish import publish_versions
    from ortserve.repository.config import load_model_config

    model_dir = tmp_path / "models" / "mlp"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(mlp["model"].read_bytes())
    (model_dir / "config.toml").write_text("max_batch_size = 8\n")
    with pytest.raises(OptimizeError, match=r"cannot publish into .*published before the error: 2"):
        publish_versions(tmp_path / "models", "mlp", [(mlp["model"], {}), (tmp_path / "missing.onnx", {})])
    assert load_model_config(model_dir).default_version == "1"
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]


def test_publishing_pins_the_serving_version_when_config_has_no_default(mlp, tmp_path):
    # Without default_version the server serves the highest version: publishing version 2 would roll it out.
    from ortserve.optimize.publish import publish_versions
    from ortserve.repository.config import load_model_config

    model_dir = tmp_path / "models" / "mlp"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(mlp["model"].read_bytes())
    (model_dir / "config.toml").write_text("max_batch_size = 8\n[batching]\nmax_queue_delay_us = 100\n")
    assert publish_versions(tmp_path / "models", "mlp", [(mlp["model"], {})]) == [2]
    config = load_model_config(model_dir)
    assert config.default_version == "1" and config.max_batch_size == 8
    assert config.batching.max_queue_delay_us == 100
    assert publish_versions(tmp_path / "models", "mlp", [(mlp["model"], {})]) == [3]
    assert load_model_config(model_dir).default_version == "1"


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "x:flaot32:batch,4"], "unknown dtype 'flaot32'"),
        (["--write-recipe", "/nonexistent/dir/r.toml"], "--write-recipe /nonexistent/dir/r.toml"),
        (["--repo", "REPO", "--name", "a/b"], "bad model name 'a/b'"),
    ],
)
def test_more_bad_input_is_one_line_and_exit_2(mlp, tmp_path, capsys, args, message):
    args = [a.replace("REPO", str(tmp_path / "models")) for a in args]
    code = main([str(mlp["model"]), "--quantize", "dynamic", *args, "--out", str(tmp_path / "o"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("model.onnx"))
