"""The model card ortserve-optimize writes into each version it publishes (MODEL_CARD.md), from its report."""

from __future__ import annotations

import json

from ortserve.optimize.__main__ import main as optimize
from ortserve.repository import publish_version, read_manifest, read_model_card


def test_optimize_publishes_a_card_per_version(mlp, tmp_path):
    repo = tmp_path / "models"
    publish_version(repo, "mlp", mlp["model"])  # version 1: the parent
    args = [str(repo / "mlp" / "1" / "model.onnx"), "--quantize", "dynamic", "--quantize", "static"]
    args += ["--repo", str(repo), "--name", "mlp", "--out", str(tmp_path / "out"), "--min-cosine", "0.9"]
    args += ["--intended-use", "Scoring test rows.", "--limitation", "Only 64 features."]
    args += ["--batch-sizes", "1,8", "--bench-seconds", "0.02", "--quiet"]
    assert optimize(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for variant in report["variants"]:
        path = repo / "mlp" / str(variant["version"])
        card = read_model_card(path, read_manifest(path))
        assert card is not None and card.startswith(f"# mlp version {variant['version']}: {variant['name']}")
        assert f"Variant **{variant['name']}** of version 1 of mlp" in card
        assert "## Intended use\n\nScoring test rows." in card
        assert "| input | input | float32 | [batch, 64] |" in card
        assert "- **parent version**: 1" in card
        assert f"`{variant['steps'][-1]['step']}`" in card
        assert "| mean cosine | >= 0.9 |" in card and "| pass |" in card
        assert "synthetic inputs" in card  # no --data: the card says what that means
        assert "- Only 64 features." in card
        assert ("- **calibration**" in card) == (variant["name"] == "int8-static")
        speedup = variant["speedup"]["8"]
        assert f"| speed-up at batch 8 | 1.00x | {speedup:.2f}x |" in card
