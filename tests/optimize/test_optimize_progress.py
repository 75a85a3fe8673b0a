"""Progress output of ``ortserve-optimize``, run as a program: bars on a terminal (a pseudo-terminal here),
plain lines when stderr is a file or a pipe, nothing at all with ``--quiet``, including what ONNX Runtime,
torch and transformers would print on their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

FAST = ["--batch-sizes", "1,8", "--bench-seconds", "0.02"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NET = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.features(x))

def make():
    torch.manual_seed(0)
    return Net()
"""


def optimize(args: list[str], cwd: Path, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "ortserve.optimize", *args]
    return subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=600
    )


def test_plain_lines_when_not_a_terminal(mlp, tmp_path):
    proc = optimize([str(mlp["model"]), "--quantize", "static", "--out", "out", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not ANSI.search(proc.stderr)
    lines = proc.stderr.splitlines()
    assert "ortserve-optimize: calibration (minmax) ..." in lines
    assert any(
        re.fullmatch(r"ortserve-optimize: calibration \(minmax\): done in \d+\.\d s", x) for x in lines
    )
    assert any(
        x.startswith("ortserve-optimize: benchmark (2 models, batch sizes 1, 8): done in") for x in lines
    )
    assert proc.stdout.splitlines() == ["int8-static: accepted", "report: out/report.md"]


def test_bars_on_a_terminal(mlp, tmp_path):
    leader, follower = os.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = optimize(
            [str(mlp["model"]), "--quantize", "static", "--out", "out", *FAST], tmp_path, follower
        )
    finally:
        os.close(follower)
    reader.join(10)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    assert ANSI.search(screen), "rich draws with escape sequences on a terminal"
    text = ANSI.sub("", screen)
    assert "━" in text and "calibration (minmax)" in text and "benchmark (2 models, batch sizes 1, 8)" in text
    assert re.search(r"calibration \(minmax\)\s+━+\s+(\d+)/\1", text), "the calibration bar completes"
    assert "ortserve-optimize: source: ONNX file" in text  # lines still print, above the bars


@pytest.mark.timeout(600)
def test_quiet_prints_nothing_for_a_torch_source(tmp_path):
    pytest.importorskip("torch_pruning")
    import torch
    from safetensors.torch import save_file

    (tmp_path / "quiet_net.py").write_text(textwrap.dedent(NET))
    sys.path.insert(0, str(tmp_path))
    try:
        import quiet_net

        net = quiet_net.make().eval()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("quiet_net", None)
    save_file(net.state_dict(), tmp_path / "net.safetensors")
    x = np.random.default_rng(0).standard_normal((48, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        labels = net(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "data.npz", x=x, labels=labels)
    args = ["quiet_net:make", "--weights", "net.safetensors", "--input", "x:float32:batch,3,12,12"]
    args += ["--prune", "0.5", "--finetune-epochs", "1", "--train-data", "data.npz", "--data", "data.npz"]
    args += ["--quantize", "static", "--out", "out", "--quiet", *FAST]
    proc = optimize(args, tmp_path)  # export, pruning, fine-tuning, calibration, benchmark: all silent
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    report = (tmp_path / "out" / "report.json").read_text()
    assert '"step": "finetune"' in report and '"step": "quantize-static"' in report
