"""Build the demo model repository: a small MLP trained on scikit-learn's bundled digits data
set (8x8 images, pixel values 0..16), exported to ONNX and published as ``digits`` version 1.

    python -m ortserve.optimize.demo --repo models          # reuses an existing version 1
    python -m ortserve.optimize.demo --repo models --force  # rebuilds it

The ONNX graph takes raw pixels ``input`` float32 [N, 64] and returns ``logits`` [N, 10],
``probabilities`` [N, 10] and ``label`` int64 [N]. The version carries a reference profile
(``reference.json``: the test split's pixels and predicted classes) for drift monitoring. Training is seeded: the same
scikit-learn version gives the same weights and a byte-identical model.onnx.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ortserve.repository import (
    CONFIG,
    MODEL_FILE,
    REFERENCE,
    BatchingConfig,
    ModelCard,
    ModelConfig,
    RuntimeConfig,
    config_text,
    publish_version,
    write_model_config,
)
from ortserve.repository.reference import build_reference

SEED = 0
MODEL = "digits"

DEMO_CONFIG = ModelConfig(
    MODEL,
    max_batch_size=64,
    default_version="1",
    batching=BatchingConfig(max_queue_delay_us=500, max_queue_size=1024),
    runtime=RuntimeConfig(providers=("CPUExecutionProvider",), intra_op_threads=1, instances=2),
)
HEADER = """\
The demo model, written by `python -m ortserve.optimize.demo`. Variants published later (versions 2, 3...)
serve only when asked for by version or routed by a flag: the default stays version 1."""
#: The demo's config.toml text (benchmarks serve their stand-in models with it).
CONFIG_TOML = config_text(DEMO_CONFIG, HEADER)


def train(seed: int = SEED):
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    with warnings.catch_warnings():  # 300 epochs is enough for ~97% test accuracy; no need to converge
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train / 16.0, y_train)
    return clf, x_test, y_test


def to_onnx(clf) -> bytes:
    """The fitted MLP as an ONNX graph; pixel scaling (/16) is part of the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, w2 = (w.astype(np.float32) for w in clf.coefs_)
    b1, b2 = (b.astype(np.float32) for b in clf.intercepts_)
    inits = [
        numpy_helper.from_array(np.array(1 / 16, dtype=np.float32), "scale"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "scale"], ["scaled"]),
        helper.make_node("Gemm", ["scaled", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ortserve-demo"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build(repo: Path, force: bool = False, quiet: bool = False) -> Path:
    """Train, export and publish ``digits`` version 1 (kept when it exists, unless ``force``); the model's
    config.toml is written first when there is none."""
    import onnx
    import onnxruntime as ort
    import sklearn

    model_dir = repo / MODEL
    target = model_dir / "1"
    if (target / MODEL_FILE).exists() and not force:
        if not quiet:
            print(f"{target} exists: reusing it (--force rebuilds)", file=sys.stderr)
        return target
    started = time.perf_counter()
    clf, x_test, y_test = train()
    data = to_onnx(clf)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {"input": x_test})[0]
    accuracy = float((labels == y_test).mean())
    # What drift is measured against: the test split's pixels and the model's predictions on it.
    reference = build_reference({"input": x_test}, {"label": labels}, labels=y_test)
    if not (model_dir / CONFIG).exists():
        write_model_config(model_dir, DEMO_CONFIG, HEADER)
    extra = {
        "parent": None,
        "source": "ortserve.optimize.demo: sklearn MLPClassifier(64) on load_digits, exported with onnx.helper",
        "seed": SEED,
        "validation": {"test_accuracy": accuracy, "test_rows": len(y_test)},
        "reference": {"file": REFERENCE, "data": "load_digits test split (20%, stratified, seed 0)"},
        "libraries": {
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }
    files = {MODEL_FILE: data, REFERENCE: reference.to_json().encode()}
    target = publish_version(
        repo, MODEL, files, extra, version=1, replace=True, card=_card(accuracy, len(y_test))
    )
    if not quiet:
        print(
            json.dumps(
                {
                    "model": MODEL,
                    "version": "1",
                    "path": str(target),
                    "test_accuracy": round(accuracy, 4),
                    "seconds": round(time.perf_counter() - started, 2),
                }
            ),
            file=sys.stderr,
        )
    return target


def _card(accuracy: float, rows: int) -> ModelCard:
    return ModelCard(
        MODEL,
        "the demo MLP (FP32)",
        "A small multi-layer perceptron (64 hidden units) trained with scikit-learn on its bundled digits data "
        "set and exported to ONNX with onnx.helper. It is the parent of the variants `make serve` publishes "
        "(versions 2-4) and the model's default version.",
        intended_use="Trying ortserve: classify 8x8 images of handwritten digits given as 64 raw pixel values "
        "0..16 (scikit-learn's `load_digits`). The graph scales the pixels itself.",
        inputs=[("input", "float32", "[batch, 64]")],
        outputs=[
            ("logits", "float32", "[batch, 10]"),
            ("probabilities", "float32", "[batch, 10]"),
            ("label", "int64", "[batch]"),
        ],
        lineage=[
            (
                "source",
                "sklearn MLPClassifier(hidden_layer_sizes=(64,), max_iter=300), exported with onnx.helper",
            ),
            ("parent version", "none"),
            ("seed", str(SEED)),
        ],
        data=[
            ("training", f"load_digits, a stratified 80% split ({1797 - rows} images)"),
            ("evaluation", f"the other 20% ({rows} images)"),
        ],
        results=[["", "this version"], ["test accuracy", f"{accuracy:.4f}"]],
        limitations=[
            "Trained on 1,797 8x8 images of one data set: it is a demo, not a general digit recogniser "
            "(MNIST's 28x28 images, for one, do not fit its input).",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ortserve.optimize.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repo", type=Path, default=Path("models"), help="model repository folder (default: models)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild version 1 even if it exists")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    build(args.repo, force=args.force, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
