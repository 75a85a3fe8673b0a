"""The digits demo through ``optimize``: dynamic INT8, static INT8 and pruned variants of ``digits``.

``python -m ortserve.optimize.demo`` trains the scikit-learn MLP and publishes it as ``digits`` version 1 (FP32). This
module carries that model over to PyTorch (the same weights, the same three outputs), writes the train and
evaluation data, and runs the recipe, which publishes the variants as the next versions::

    python -m ortserve.optimize.examples.digits --repo models --work build/digits

It also holds ``cnn()``, a small digits CNN that the pruning benchmark trains and prunes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.repository import MODEL_FILE, version_dirs

SEED = 0
HIDDEN = 64

RECIPE = """\
# The digits demo recipe, written by `python -m ortserve.optimize.examples.digits`.
model = "ortserve.optimize.examples.digits:mlp"
weights = "digits.safetensors"
name = "digits"
parent = "1"
seed = 0
max_batch_size = 64

[data]
eval = "eval.npz"
train = "train.npz"
calibration = "train.npz"

[gates]
max_accuracy_drop = 1.0
min_cosine = 0.99

[benchmark]
batch_sizes = [1, 8, 32]
seconds = 0.3

[[variants]]
name = "int8-dynamic"
steps = [{step = "quantize-dynamic"}]

[[variants]]
name = "int8-static"
steps = [{step = "quantize-static", method = "minmax", samples = 512}]

[[variants]]
name = "pruned50"
steps = [{step = "prune-structured", ratio = 0.5}, {step = "finetune", epochs = 30, lr = 0.002}]
# A pruned and retrained model is a different function: judge it on accuracy, not closeness.
gates = {min_cosine = 0.9}
"""


def _nn() -> Any:
    import torch

    return torch


def mlp() -> Any:
    """The demo's MLP in PyTorch: raw pixels ``input`` [N, 64] -> ``logits``, ``probabilities``, ``label``."""
    torch = _nn()

    class DigitsMLP(torch.nn.Module):  # type: ignore[name-defined]
        input_specs = ("input:float32:batch,64",)
        output_names = ("logits", "probabilities", "label")

        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(64, HIDDEN)
            self.out = torch.nn.Linear(HIDDEN, 10)

        def forward(self, x: Any) -> Any:
            logits = self.out(torch.relu(self.hidden(x * (1 / 16))))
            return logits, torch.softmax(logits, dim=1), logits.argmax(dim=1)

    return DigitsMLP()


def cnn(width: int = 32) -> Any:
    """A small digits CNN on ``image`` [N, 1, 32, 32] (the 8x8 digits upscaled) -> ``logits`` [N, 10]."""
    torch = _nn()
    nn = torch.nn

    def block(cin: int, cout: int, stride: int) -> list[Any]:
        return [
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        ]

    class DigitsCNN(nn.Module):  # type: ignore[name-defined]
        input_specs = ("image:float32:batch,1,32,32",)
        output_names = ("logits",)

        def __init__(self) -> None:
            super().__init__()
            w = width
            self.features = nn.Sequential(
                *block(1, w, 1),
                *block(w, 2 * w, 2),
                *block(2 * w, 4 * w, 2),
                *block(4 * w, 4 * w, 1),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.classifier = nn.Linear(4 * w, 10)

        def forward(self, x: Any) -> Any:
            return self.classifier(self.features(x))

    return DigitsCNN()


def digits_split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same train/test split as ``ortserve.optimize.demo`` (raw pixels 0..16, float32)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_train, x_test, y_train.astype(np.int64), y_test.astype(np.int64)


def images(x: np.ndarray) -> np.ndarray:
    """8x8 digits as [N, 1, 32, 32] images in [0, 1] (nearest-neighbour upscaling)."""
    img = x.reshape(-1, 1, 8, 8) / 16.0
    return np.ascontiguousarray(img.repeat(4, axis=2).repeat(4, axis=3), dtype=np.float32)


def weights_from_onnx(path: Path) -> dict[str, Any]:
    """The demo ONNX model's w1/b1/w2/b2 as a state dict for :func:`mlp`."""
    import onnx
    import torch
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    try:
        return {
            "hidden.weight": torch.from_numpy(inits["w1"].T.copy()),
            "hidden.bias": torch.from_numpy(inits["b1"].copy()),
            "out.weight": torch.from_numpy(inits["w2"].T.copy()),
            "out.bias": torch.from_numpy(inits["b2"].copy()),
        }
    except KeyError as e:
        raise SystemExit(f"{path}: not the digits demo model (no initializer {e})") from None


def prepare(repo: Path, work: Path) -> Path:
    """Write digits.safetensors (from version 1), train.npz, eval.npz and recipe.toml into ``work``."""
    from safetensors.torch import save_file

    source = repo / "digits" / "1" / MODEL_FILE
    if not source.exists():
        raise SystemExit(f"{source} not found: run `python -m ortserve.optimize.demo --repo {repo}` first")
    work.mkdir(parents=True, exist_ok=True)
    save_file(weights_from_onnx(source), str(work / "digits.safetensors"))
    x_train, x_test, y_train, y_test = digits_split()
    np.savez(work / "train.npz", input=x_train, labels=y_train)
    np.savez(work / "eval.npz", input=x_test, labels=y_test)
    recipe = work / "recipe.toml"
    recipe.write_text(RECIPE)
    return recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ortserve.optimize.examples.digits", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--repo", type=Path, default=Path("models"))
    p.add_argument("--work", type=Path, default=Path("build/digits"))
    p.add_argument(
        "--force", action="store_true", help="publish the variants even if digits has versions > 1"
    )
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    model_dir = args.repo / "digits"
    later = [d for v, d in version_dirs(model_dir).items() if v != "1"]
    if later and not args.force:
        if not args.quiet:
            print(
                f"{model_dir} already has versions {sorted(d.name for d in later)}: skipping (--force adds more)",
                file=sys.stderr,
            )
        return 0
    recipe = prepare(args.repo, args.work)
    from ortserve.optimize.__main__ import main as optimize_main

    flags = ["--recipe", str(recipe), "--repo", str(args.repo), "--out", str(args.work / "report")]
    return optimize_main(flags + (["--quiet"] if args.quiet else []))


if __name__ == "__main__":
    sys.exit(main())
