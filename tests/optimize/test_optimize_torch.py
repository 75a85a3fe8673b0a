"""optimize on PyTorch sources: module:factory + safetensors / weights-only .pt, .pt2 programs, export parity,
structured and magnitude pruning, fine-tuning."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from ortserve.optimize.__main__ import main  # noqa: E402
from ortserve.repository import read_manifest  # noqa: E402

FAST = ["--batch-sizes", "1,8", "--bench-seconds", "0.02", "--quiet"]
NETS = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.features(x))

def make():
    torch.manual_seed(0)
    return Net()

class Noisy(nn.Module):
    """Adds noise at inference: its ONNX export cannot match PyTorch."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
    def forward(self, x):
        return self.fc(x) + torch.rand_like(self.fc(x)) * 10

def noisy():
    return Noisy()

def not_a_module():
    return 42
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("nets")
    (d / "tiny_nets.py").write_text(textwrap.dedent(NETS))
    sys.path.insert(0, str(d))
    import tiny_nets

    net = tiny_nets.make().eval()
    from safetensors.torch import save_file

    save_file(net.state_dict(), d / "net.safetensors")
    torch.save(net.state_dict(), d / "net.pt")
    torch.save(net, d / "pickled.pt")  # a whole pickled module: must be refused
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(d / "data.npz", x=x, labels=y)
    yield d
    sys.path.remove(str(d))
    sys.modules.pop("tiny_nets", None)


def run(args: list[str], tmp_path: Path) -> tuple[int, dict]:
    out = tmp_path / "report"
    code = main([*args, "--out", str(out), *FAST])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return code, report


def conv_out_channels(path: Path) -> list[int]:
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return [inits[n.input[1]].shape[0] for n in m.graph.node if n.op_type == "Conv"]


@pytest.mark.parametrize("weights", ["net.safetensors", "net.pt"])
def test_factory_export_fp32_matches_pytorch(nets, tmp_path, weights):
    repo = tmp_path / "models"
    code, report = run(
        [
            "tiny_nets:make",
            "--weights",
            str(nets / weights),
            "--input",
            "x:float32:batch,3,12,12",
            "--data",
            str(nets / "data.npz"),
            "--repo",
            str(repo),
            "--name",
            "cnn",
        ],
        tmp_path,
    )
    assert code == 0
    fp32 = report["variants"][0]
    assert fp32["name"] == "fp32" and fp32["steps"][0]["step"] == "export"
    assert fp32["validation"]["max_abs_err"] < 1e-4 and fp32["validation"]["accuracy_drop"] == 0
    assert report["info"]["reference"] == "PyTorch model"
    assert conv_out_channels(repo / "cnn" / "1" / "model.onnx") == [16, 32]


def test_output_name_flag_names_the_export(nets, tmp_path):
    repo = tmp_path / "models"
    code, _ = run(
        [
            "tiny_nets:make",
            "--input",
            "x:float32:batch,3,12,12",
            "--output-name",
            "scores",
            "--fp32",
            "--repo",
            str(repo),
            "--name",
            "cnn",
        ],
        tmp_path,
    )
    assert code == 0
    assert [o.name for o in onnx.load(str(repo / "cnn" / "1" / "model.onnx")).graph.output] == ["scores"]


def test_weights_are_never_unpickled(nets, tmp_path, capsys):
    code, _ = run(
        [
            "tiny_nets:make",
            "--weights",
            str(nets / "pickled.pt"),
            "--input",
            "x:float32:batch,3,12,12",
            "--fp32",
        ],
        tmp_path,
    )
    assert code == 2
    assert "weights-only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tiny_nets:make", "--fp32"], "input signature is unknown"),
        (["tiny_nets:not_a_module", "--fp32", "--input", "x:float32:batch,8"], "not a torch.nn.Module"),
        (
            [
                "tiny_nets:make",
                "--fp32",
                "--input",
                "x:float32:batch,3,12,12",
                "--weights",
                "nope.safetensors",
            ],
            "not found",
        ),
    ],
)
def test_factory_errors(nets, tmp_path, capsys, args, message):
    code, _ = run(args, tmp_path)
    assert code == 2 and message in capsys.readouterr().err


def test_export_parity_failure_says_where(nets, tmp_path, capsys):
    code, _ = run(["tiny_nets:noisy", "--input", "x:float32:batch,8", "--fp32"], tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "export parity failed" in err and "deviates by" in err and "at index" in err


def test_prune_structured_removes_channels_and_finetune_recovers(nets, tmp_path):
    repo = tmp_path / "models"
    code, report = run(
        [
            "tiny_nets:make",
            "--weights",
            str(nets / "net.safetensors"),
            "--input",
            "x:float32:batch,3,12,12",
            "--no-fp32",
            "--prune",
            "0.5",
            "--finetune-epochs",
            "3",
            "--data",
            str(nets / "data.npz"),
            "--train-data",
            str(nets / "data.npz"),
            "--repo",
            str(repo),
            "--name",
            "cnn",
        ],
        tmp_path,
    )
    assert code == 0, report
    pruned = report["variants"][0]
    assert [s["step"] for s in pruned["steps"]] == ["prune-structured", "finetune", "export"]
    assert conv_out_channels(repo / "cnn" / "1" / "model.onnx") == [8, 16]
    assert pruned["benchmark"]["size_bytes"] < report["baseline"]["benchmark"]["size_bytes"] * 0.5
    manifest = read_manifest(repo / "cnn" / "1")
    assert manifest is not None and manifest["recipe"]["steps"][0]["params"]["ratio"] == 0.5


def test_prune_magnitude_zeroes_weights(nets, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
model = "tiny_nets:make"
weights = "{nets / "net.safetensors"}"
[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 3, 12, 12]
[[variants]]
name = "sparse"
steps = [{{step = "prune-magnitude", amount = 0.6}}]
""")
    repo = tmp_path / "m"
    code, _ = run(["--recipe", str(recipe), "--repo", str(repo), "--name", "cnn"], tmp_path)
    assert code == 0
    m = onnx.load(str(repo / "cnn" / "1" / "model.onnx"))
    conv_w = [numpy_helper.to_array(i) for i in m.graph.initializer if i.dims and len(i.dims) == 4]
    assert conv_w and all(0.55 < float((w == 0).mean()) < 0.65 for w in conv_w)


def test_finetune_with_user_function(nets, tmp_path):
    (nets / "tiny_train.py").write_text(
        "def calls(module, data):\n    calls.seen = sorted(data)\n    return module\ncalls.seen = None\n"
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
model = "tiny_nets:make"
[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 3, 12, 12]
[data]
train = "{nets / "data.npz"}"
[[variants]]
name = "tuned"
steps = [{{step = "finetune", function = "tiny_train:calls"}}]
""")
    code, _ = run(["--recipe", str(recipe)], tmp_path)
    import tiny_train

    assert code == 0 and tiny_train.calls.seen == ["labels", "x"]


def test_pt2_program_source(nets, tmp_path):
    import tiny_nets

    net = tiny_nets.make().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(net, (torch.randn(2, 3, 12, 12),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, tmp_path / "net.pt2")
    code, report = run([str(tmp_path / "net.pt2"), "--quantize", "dynamic", "--fp32"], tmp_path)
    assert code == 0
    assert report["info"]["source_kind"] == "pt2"
    assert report["info"]["inputs"][0]["shape"] == ["batch", 3, 12, 12]
    assert report["variants"][0]["validation"]["max_abs_err"] < 1e-4


def test_torch_run_is_deterministic(nets, tmp_path):
    blobs = []
    for run_name in ("a", "b"):
        repo = tmp_path / run_name
        code = main(
            [
                "tiny_nets:make",
                "--weights",
                str(nets / "net.safetensors"),
                "--input",
                "x:float32:batch,3,12,12",
                "--prune",
                "0.5",
                "--finetune-epochs",
                "1",
                "--quantize",
                "dynamic",
                "--train-data",
                str(nets / "data.npz"),
                "--repo",
                str(repo),
                "--name",
                "cnn",
                "--out",
                str(tmp_path / f"r{run_name}"),
                *FAST,
            ]
        )
        assert code == 0
        blobs.append([p.read_bytes() for p in sorted((repo / "cnn").glob("*/model.onnx"))])
    assert len(blobs[0]) == 4  # fp32, pruned50, int8-dynamic, pruned-int8-dynamic
    assert blobs[0] == blobs[1]


def test_digits_mlp_matches_the_demo_model_and_keeps_its_outputs(tmp_path):
    """ortserve.optimize.examples.digits carries the demo's ONNX weights over to PyTorch unchanged."""
    import onnxruntime as ort
    from safetensors.torch import save_file

    from ortserve.optimize.demo import to_onnx, train
    from ortserve.optimize.examples.digits import weights_from_onnx

    clf, x_test, _ = train()
    (tmp_path / "v1.onnx").write_bytes(to_onnx(clf))
    save_file(weights_from_onnx(tmp_path / "v1.onnx"), str(tmp_path / "w.safetensors"))
    repo = tmp_path / "models"
    code, _ = run(
        [
            "ortserve.optimize.examples.digits:mlp",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--fp32",
            "--repo",
            str(repo),
            "--name",
            "digits",
        ],
        tmp_path,
    )
    assert code == 0
    path = repo / "digits" / "1" / "model.onnx"
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits", "probabilities", "label"]
    ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x_test})
    demo = ort.InferenceSession(str(tmp_path / "v1.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x_test}
    )
    np.testing.assert_allclose(ours[0], demo[0], atol=1e-4)
    np.testing.assert_array_equal(ours[2], demo[2])
