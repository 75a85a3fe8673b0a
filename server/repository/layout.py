"""The names that make a folder a model repository::

    <repo>/flags.json                       FLAGS_FILE  (routing flags, optional)
    <repo>/<model>/config.toml              CONFIG      (optional)
    <repo>/<model>/<version>/model.onnx     MODEL_FILE
    <repo>/<model>/<version>/manifest.json  MANIFEST    (written by optimize, checked by the server)
    <repo>/<model>/<version>/reference.json REFERENCE   (the reference profile drift is measured against)
    <repo>/<model>/<version>/MODEL_CARD.md  MODEL_CARD  (why the version exists; optional, listed in the manifest)
    <repo>/<model>/<version>/trt-cache/     TRT_CACHE   (TensorRT engines and timing cache, written by the
                                                         server when the folder is writable and unsigned)

A version is a folder named by digits. Hidden names (``.staging-…``) are work in progress, never a model
or a version.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CONFIG",
    "FLAGS_FILE",
    "MANIFEST",
    "MODEL_CARD",
    "MODEL_FILE",
    "REFERENCE",
    "TRT_CACHE",
    "check_model_name",
    "next_version",
    "version_dirs",
]

MODEL_FILE = "model.onnx"
CONFIG = "config.toml"
MANIFEST = "manifest.json"
MODEL_CARD = "MODEL_CARD.md"
FLAGS_FILE = "flags.json"
REFERENCE = "reference.json"
TRT_CACHE = "trt-cache"


def check_model_name(name: str) -> str:
    """``name`` if it can be a model folder; ValueError otherwise (a path, a hidden name)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"bad model name {name!r}: use a plain folder name such as 'digits'")
    return name


def version_dirs(model_dir: Path) -> dict[str, Path]:
    """Every version folder of a model (complete or not), by version name."""
    if not Path(model_dir).is_dir():
        return {}
    return {p.name: p for p in Path(model_dir).iterdir() if p.is_dir() and p.name.isdigit()}


def next_version(model_dir: Path) -> int:
    """One above the highest version folder (1 for a new model)."""
    return max((int(v) for v in version_dirs(model_dir)), default=0) + 1
