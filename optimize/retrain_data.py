"""The data of ``ortserve-optimize retrain`` (the command: ``ortserve.optimize.retrain``): the labelled
requests of a payload log in a time window, the default version it retrains, its weights for the PyTorch
module, and accuracy on the held-out slice."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.optimize.errors import OptimizeError
from ortserve.repository import ConfigError, load_model_config, version_dirs
from ortserve.repository.payload import PayloadRecord, join_labelled, parse_payload_lines, payload_files

__all__ = ["collect", "default_version", "holdout_accuracy", "parent_weights", "sha256_of"]


def _time(text: str | None, what: str) -> _dt.datetime | None:
    if not text:
        return None
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OptimizeError(
            f"{what} {text!r}: expected an RFC 3339 time such as 2026-11-26T00:00:00Z"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def collect(
    log_dir: Path, model: str, since: str | None = None, until: str | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict[str, Any]], list[str]]:
    """(inputs by name, labels, the payload files read with their sha256, request times) for the logged
    requests of ``model`` with joined class labels in the time window, oldest first."""
    start, end = _time(since, "--since"), _time(until, "--until")
    folder = Path(log_dir) / model
    if not folder.is_dir():
        raise OptimizeError(
            f"{folder}: no payload log of model {model!r} (run the server with --payload-log)"
        )
    files: list[dict[str, Any]] = []
    records: list[PayloadRecord] = []
    for path in payload_files(log_dir, model):
        data = path.read_bytes()  # hashed and parsed from the same bytes: the server may still be appending
        files.append({"file": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
        records.extend(parse_payload_lines(data.splitlines()))
    inputs: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    times: list[str] = []
    for record, truth in join_labelled(records):
        at = _time(record.time, "record time")
        if (start and at and at < start) or (end and at and at > end) or not truth.get("labels"):
            continue
        rows = np.asarray(truth["labels"], np.int64)
        if any(len(a) != len(rows) for a in record.inputs.values()):
            continue
        for name, a in record.inputs.items():
            inputs.setdefault(name, []).append(a)
        labels.append(rows)
        times.extend([record.time] * len(rows))
    if not labels:
        raise OptimizeError(f"no labelled requests of {model!r} in {folder} within the time window")
    return {n: np.concatenate(v) for n, v in inputs.items()}, np.concatenate(labels), files, times


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_version(model_dir: Path) -> str:
    try:
        default = load_model_config(model_dir).default_version
    except ConfigError as e:
        raise OptimizeError(str(e)) from None
    versions = sorted(version_dirs(model_dir), key=int)
    if not versions:
        raise OptimizeError(f"{model_dir}: no version to retrain")
    return default or versions[-1]


def parent_weights(source: str, onnx_path: Path, out: Path) -> Path:
    """The default version's weights for the module ``source`` builds, as a safetensors file."""
    import onnx
    import torch
    from onnx import numpy_helper
    from safetensors.torch import save_file

    modname, _, attr = source.partition(":")
    try:
        module_file = importlib.import_module(modname)
        state = getattr(module_file, attr)().state_dict()
    except (ImportError, AttributeError) as e:
        raise OptimizeError(f"--source {source!r}: {e}") from None
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    if all(k in inits and inits[k].shape == tuple(v.shape) for k, v in state.items()):
        weights = {k: torch.from_numpy(inits[k].copy()) for k in state}
    elif hasattr(module_file, "weights_from_onnx"):
        weights = module_file.weights_from_onnx(onnx_path)
    else:
        raise OptimizeError(
            f"{onnx_path}: its initializers do not match {source}'s parameters by name; give --weights, or "
            f"define weights_from_onnx(path) in {modname}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out))
    return out


def holdout_accuracy(onnx_path: Path, inputs: dict[str, np.ndarray], labels: np.ndarray) -> float:
    from ortserve.optimize.specs import Dataset
    from ortserve.optimize.validate import primary_output, run_onnx

    outputs = run_onnx(onnx_path, Dataset(inputs, labels, source="holdout"))
    scores = outputs[primary_output(outputs)]
    return float((scores.reshape(len(labels), -1).argmax(1) == labels).mean())
