"""``ortserve-optimize retrain``: from the payload log and its joined feedback to a new candidate version.

    ortserve-optimize retrain --repo models --model digits --payload-log payloads \\
        --source ortserve.optimize.examples.digits:mlp --since 2026-11-26T00:00:00Z --canary

1. Reads the requests of ``--model`` that got ground truth (``ortserve.repository.payload.join_labelled``)
   from ``--payload-log`` within ``--since``/``--until``, keeps a ``--sample`` share (seeded) and at most
   ``--max-rows`` of the newest, and splits off a ``--holdout`` slice.
2. ``--mode finetune`` (default): builds the PyTorch module (``--source module:factory``) with the weights of
   the model's current default version (``--weights``, else the version's initializers matched by name to
   the module's parameters, as a version exported from that module has them, else the factory module's
   ``weights_from_onnx(path)``), fine-tunes it on the new rows (the ``finetune`` step; ``--replay FILE.npz``
   mixes in earlier training data against forgetting). ``--mode recalibrate``: re-runs static INT8
   quantization of the FP32 model the default version was made from, calibrated on the new rows.
3. Validates against the current default on the held-out slice (the candidate must be at least
   ``--min-improvement`` points more accurate), benchmarks, and publishes it as a new version whose
   manifest records its lineage: parent version, data window, rows, and the sha256 of every payload file
   read and of the train/holdout files made from them.
4. ``--canary`` starts a rollout of the new version on the server at ``--server`` (Admin StartRollout,
   ``--rollout-spec``), waiting up to ``--wait`` seconds for the server to load the version.

Exit status: 0 published (and, with --canary, the rollout started), 1 rejected by the gate, 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.optimize.errors import OptimizeError
from ortserve.repository import ConfigError, load_model_config, version_dirs
from ortserve.repository.payload import PayloadRecord, join_labelled, parse_payload_lines, payload_files

__all__ = ["build_parser", "collect", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ortserve-optimize retrain",
        description="Retrain a model on its payload log and feedback, publish the result, optionally canary it.",
        epilog=__doc__.split("\n\n", 1)[1].rsplit("\n\nExit status", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repo", type=Path, required=True, help="the model repository")
    p.add_argument("--model", required=True, help="the model's name in the repository")
    p.add_argument("--payload-log", type=Path, required=True, help="the server's --payload-log folder")
    p.add_argument("--since", help="first request time to use (RFC 3339, e.g. 2026-11-26T00:00:00Z)")
    p.add_argument("--until", help="last request time to use (RFC 3339)")
    p.add_argument("--sample", type=float, default=1.0, help="share of the labelled requests to use (seeded)")
    p.add_argument("--max-rows", type=int, default=100_000, help="at most this many rows, the newest")
    p.add_argument("--holdout", type=float, default=0.25, help="share of rows held out for validation")
    p.add_argument("--min-rows", type=int, default=50, help="refuse to train on fewer labelled rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("finetune", "recalibrate"), default="finetune")
    p.add_argument("--source", help="module:factory building the PyTorch model (finetune)")
    p.add_argument("--weights", help="safetensors weights for --source (default: the default version's)")
    p.add_argument("--replay", type=Path, help=".npz of earlier training data mixed into training")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="PyTorch and ONNX Runtime threads (0: their defaults; 1 suits a small model on a busy machine)",
    )
    p.add_argument(
        "--min-improvement", type=float, default=0.0, help="points of holdout accuracy over the default"
    )
    p.add_argument("--out", type=Path, default=Path("retrain-out"), help="report and data folder")
    p.add_argument("--bench-seconds", type=float, default=0.3)
    p.add_argument("--canary", action="store_true", help="start a rollout of the new version")
    p.add_argument("--server", default="127.0.0.1:8001", help="the server's gRPC address (--canary)")
    p.add_argument("--rollout-spec", type=Path, help="rollout spec, TOML or JSON (--canary)")
    p.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for the server to load the version"
    )
    p.add_argument("--root-certificates", type=Path, help="PEM CA of the server (TLS)")
    p.add_argument("--api-key", help="API key for the server (or ORTSERVE_API_KEY)")
    p.add_argument("--quiet", "-q", action="store_true")
    return p


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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _default_version(model_dir: Path) -> str:
    try:
        default = load_model_config(model_dir).default_version
    except ConfigError as e:
        raise OptimizeError(str(e)) from None
    versions = sorted(version_dirs(model_dir), key=int)
    if not versions:
        raise OptimizeError(f"{model_dir}: no version to retrain")
    return default or versions[-1]


def _weights(source: str, onnx_path: Path, out: Path) -> Path:
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


def _accuracy(onnx_path: Path, inputs: dict[str, np.ndarray], labels: np.ndarray) -> float:
    from ortserve.optimize.specs import Dataset
    from ortserve.optimize.validate import primary_output, run_onnx

    outputs = run_onnx(onnx_path, Dataset(inputs, labels, source="holdout"))
    scores = outputs[primary_output(outputs)]
    return float((scores.reshape(len(labels), -1).argmax(1) == labels).mean())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except OptimizeError as e:
        print(f"ortserve-optimize retrain: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ortserve.optimize.retrain_run import retrain

    return retrain(args)
