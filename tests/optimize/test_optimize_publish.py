"""optimize into a model repository: versions with manifests and reports, gates that publish nothing,
default_version never moved, the canary flag proposal, and a server serving what was published."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from ortserve.optimize.__main__ import main
from ortserve.repository import read_manifest, verify_manifest
from tests.optimize.common import FAST, ops, versions


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
