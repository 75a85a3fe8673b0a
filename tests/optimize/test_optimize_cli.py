"""The ortserve-optimize command line: --help, --list-steps, flags, --write-recipe, and bad input (flags or a
recipe) as one line and exit status 2 before anything is built or published."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ortserve.optimize.__main__ import main
from tests.optimize.common import FAST, ROOT, versions


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


def test_seed_threads_graph_optimize_and_quiet_flags(mlp, tmp_path, capsys, caplog):
    out = tmp_path / "r"
    root, filters = logging.getLogger().level, list(warnings.filters)
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
    # --quiet quiets the libraries for the run only: a caller in the same process keeps its logging
    assert (logging.getLogger().level, list(warnings.filters)) == (root, filters)
    logging.getLogger("ortserve.runtime").warning("still heard")
    assert "still heard" in caplog.text
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["seed"] == 7 and report["baseline"]["benchmark"]["threads"] == 1
    assert [v["name"] for v in report["variants"]] == ["fp32-optimized"]
    assert report["variants"][0]["steps"][0]["step"] == "graph-optimize"
    assert main(args) == 0  # without --quiet: progress on stderr, a summary on stdout
    captured = capsys.readouterr()
    assert "ortserve-optimize: fp32-optimized: graph-optimize" in captured.err
    assert "fp32-optimized: accepted" in captured.out


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


def test_write_recipe_round_trips_every_setting(mlp, tmp_path):
    """Flags -> recipe -> the same Recipe, including the FP32 variant (no steps) and inputs with named dims."""
    from ortserve.optimize.__main__ import build_parser, recipe_from_args
    from ortserve.optimize.recipe import load_recipe, recipe_to_toml

    args = build_parser().parse_args(
        [
            str(mlp["model"]),
            "--fp32",
            "--quantize",
            "static",
            "--input",
            "input:float32:batch,64",
            "--samples",
            "32",
            "--batch-sizes",
            "1,4",
            "--bench-seconds",
            "0.5",
            "--max-accuracy-drop",
            "2",
            "--repo",
            str(tmp_path / "models"),
            "--name",
            "mlp",
            "--sign-key",
            str(tmp_path / "key.pem"),
        ]
    )
    recipe = recipe_from_args(args)
    assert recipe.sign_key == str(tmp_path / "key.pem")
    path = tmp_path / "r.toml"
    path.write_text(recipe_to_toml(recipe))
    again = load_recipe(path)
    assert again == recipe
    assert [v.steps for v in again.variants] == [[], [("quantize-static", {"method": "minmax"})]]
    assert again.inputs is not None and again.inputs[0].dims == ("batch", 64)
    assert recipe_to_toml(again) == path.read_text()  # the same run, the same bytes


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


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ('steps = [{step = "quantize-turbo"}]', "unknown step 'quantize-turbo'"),
        ('steps = [{step = "quantize-dynamic", bits = 4}]', "unknown parameter 'bits'"),
        ('steps = [{step = "quantize-static", method = "magic"}]', "method must be"),
        (
            'steps = [{step = "quantize-dynamic", per_channel = "yes"}]',
            "step 'quantize-dynamic': per_channel: expected true or false, got 'yes'",
        ),
        (
            'steps = [{step = "quantize-dynamic", per_chanel = true}]',
            "unknown parameter 'per_chanel'; did you mean 'per_channel'?",
        ),
        # typos must not silently publish the untouched model or drop a gate
        ('step = [{step = "quantize-dynamic"}]', "unknown key 'step'"),
        ("", "variants[0]: 'steps' must be a list of steps, e.g. steps = [{step = \"quantize-dynamic\"}]"),
        ('steps = ["fp16"]', "variants[0].steps: expected a list of tables, got ['fp16']"),
        ('steps = [{step = "quantize-dynamic"}]\ngates = {min_cosin = 0.9}', "unknown key 'min_cosin'"),
        (
            'steps = [{step = "quantize-dynamic"}]\ngates = {min_cosine = "high"}',
            "variants[0].gates.min_cosine: expected a number, got 'high'",
        ),
        ('steps = [{step = "quantize-dynamic"}]\n[data]\nevaluation = "x.npz"', "unknown key 'evaluation'"),
        (
            'steps = [{step = "quantize-dynamic"}]\n[data]\nsamples = 0',
            "[data] samples: expected an integer >= 1, got 0",
        ),
        (
            'steps = [{step = "quantize-dynamic"}]\n[benchmark]\nbatch_sizes = [1, 0]',
            "[benchmark] batch_sizes: expected a non-empty list of integers >= 1, got [1, 0]",
        ),
        (
            'steps = [{step = "fp16"}]\n[[inputs]]\nname = "x"\ndtype = "flaot32"\nshape = ["batch", 64]',
            "inputs[0].dtype: expected one of 'bool', ",
        ),
    ],
)
def test_bad_recipe_is_exit_2(mlp, tmp_path, capsys, variant, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'model = "{mlp["model"]}"\n[[variants]]\nname = "v"\n{variant}\n')
    assert main(["--recipe", str(recipe), "-q"]) == 2
    assert message in capsys.readouterr().err
