"""Every version optimize publishes from real eval data carries its reference profile (the drift
baseline), listed in its manifest; synthetic data makes none; the recipe's [reference] table configures it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ortserve.optimize.__main__ import main
from ortserve.repository import REFERENCE, read_manifest, verify_manifest
from ortserve.repository.reference import read_reference
from tests.optimize.common import FAST, versions

RECIPE = """
model = "{model}"
name = "mlp"
repo = "{repo}"
out = "{out}"
[data]
eval = "{eval}"
[benchmark]
batch_sizes = [1]
seconds = 0.05
[reference]
bins = 5
prediction = "probabilities"
{reduce}
[[variants]]
name = "int8-dynamic"
steps = [{{step = "quantize-dynamic"}}]
"""


def recipe(tmp_path, mlp, reduce: str = "") -> str:
    path = tmp_path / "recipe.toml"
    fields = {
        "model": mlp["model"],
        "eval": mlp["eval"],
        "repo": tmp_path / "models",
        "out": tmp_path / "out",
    }
    path.write_text(RECIPE.format(**fields, reduce=reduce))
    return str(path)


def test_published_versions_carry_their_reference_profile(mlp, tmp_path):
    assert main(["--recipe", recipe(tmp_path, mlp, 'reduce = {input = "stats"}'), "--quiet"]) == 0
    version = tmp_path / "models" / "mlp" / "1"
    manifest = read_manifest(version)
    assert manifest is not None and REFERENCE in manifest["files"]
    verify_manifest(version, manifest)
    assert manifest["reference_profile"]["file"] == REFERENCE
    profile = read_reference(version)
    assert profile is not None and profile.rows == 256 and profile.bins == 5
    assert profile.features.names == ["input:mean", "input:std", "input:min", "input:max"]
    assert profile.features.edges.shape[1] <= 5 + 2  # 6 quantiles at most, and the edge under the minimum
    assert profile.prediction is not None and profile.prediction.output == "probabilities"
    assert profile.prediction.kind == "class" and profile.prediction.classes == 10
    assert profile.accuracy == pytest.approx(manifest["validation"]["accuracy"])
    x = np.load(mlp["eval"])["input"]
    assert (
        profile.features.count(profile.input_features({"input": x})).tolist()
        == profile.features.counts.tolist()
    )


def test_synthetic_eval_data_makes_no_profile(mlp, tmp_path):
    repo = tmp_path / "models"
    args = [str(mlp["model"]), "--quantize", "dynamic", "--repo", str(repo), "--name", "mlp", *FAST]
    assert main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert versions(repo / "mlp") == ["1"]
    assert not (repo / "mlp" / "1" / REFERENCE).exists()
    assert json.loads((repo / "mlp" / "1" / "manifest.json").read_text())["reference_profile"] is None


def test_a_reduction_for_an_unknown_input_is_one_line(mlp, tmp_path, capsys):
    assert main(["--recipe", recipe(tmp_path, mlp, 'reduce = {pixels = "stats"}'), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == "ortserve-optimize: error: reference profile: reduction for 'pixels', which is not an input (input)"
    )
    assert not (tmp_path / "models" / "mlp").exists() or versions(tmp_path / "models" / "mlp") == []
