"""The body of ``ortserve-optimize retrain`` (its flags: ``ortserve.optimize.retrain``; the data it reads:
``retrain_data``): make the train and holdout files, run the optimize pipeline with a finetune or
recalibrate variant gated against the current default, publish with lineage, start the canary."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.recipe import Recipe, VariantSpec
from ortserve.optimize.retrain_data import (
    collect,
    default_version,
    holdout_accuracy,
    parent_weights,
    sha256_of,
)
from ortserve.repository import MODEL_FILE
from ortserve.repository.manifest import read_manifest

__all__ = ["retrain"]


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"retrain: {text}", file=sys.stderr, flush=True)


def _split(
    args: argparse.Namespace, inputs: dict[str, np.ndarray], labels: np.ndarray, out: Path
) -> dict[str, Any]:
    """Sample, cap and split the rows; write train.npz and holdout.npz; what was used, for the manifest."""
    rng = np.random.default_rng(args.seed)
    n = len(labels)
    keep = np.flatnonzero(rng.random(n) < args.sample) if args.sample < 1 else np.arange(n)
    keep = keep[-args.max_rows :]  # the newest rows (the log is in time order)
    if len(keep) < args.min_rows:
        raise OptimizeError(
            f"{len(keep)} labelled rows after sampling, fewer than --min-rows {args.min_rows}"
        )
    order = rng.permutation(keep)
    held = max(1, round(len(order) * args.holdout))
    hold, train = np.sort(order[:held]), np.sort(order[held:])
    out.mkdir(parents=True, exist_ok=True)
    train_arrays = {k: v[train] for k, v in inputs.items()}
    train_labels = labels[train]
    replay = 0
    if args.replay is not None:
        with np.load(args.replay) as old:
            missing = [k for k in train_arrays if k not in old.files]
            if missing or "labels" not in old.files:
                raise OptimizeError(f"--replay {args.replay}: needs arrays {sorted(train_arrays)} and labels")
            replay = len(old["labels"])
            train_arrays = {k: np.concatenate([old[k].astype(v.dtype), v]) for k, v in train_arrays.items()}
            train_labels = np.concatenate([old["labels"].astype(np.int64), train_labels])
    np.savez(out / "train.npz", **train_arrays, labels=train_labels)
    np.savez(out / "holdout.npz", **{k: v[hold] for k, v in inputs.items()}, labels=labels[hold])
    return {
        "rows": int(n),
        "used": len(keep),
        "train": len(train),
        "holdout": int(held),
        "replay": replay,
    }


def retrain(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.threads > 0 and args.mode == "finetune":
        import torch

        torch.set_num_threads(args.threads)
    model_dir = args.repo / args.model
    parent = default_version(model_dir)
    parent_onnx = model_dir / parent / MODEL_FILE
    inputs, labels, files, times = collect(args.payload_log, args.model, args.since, args.until)
    data_dir = args.out / "data"
    counts = _split(args, inputs, labels, data_dir)
    _say(args, f"{counts['used']} labelled rows from {len(files)} payload file(s); parent version {parent}")
    with np.load(data_dir / "holdout.npz") as h:
        hold_inputs = {k: h[k] for k in h.files if k != "labels"}
        hold_labels = h["labels"]
    default_acc = holdout_accuracy(parent_onnx, hold_inputs, hold_labels)
    recipe = Recipe(
        name=args.model, repo=str(args.repo), out=str(args.out / "report"), seed=args.seed, parent=parent,
        eval_data=str(data_dir / "holdout.npz"), train_data=str(data_dir / "train.npz"),
        calibration_data=str(data_dir / "train.npz"), bench_seconds=args.bench_seconds,
    )  # fmt: skip
    recipe.threads = args.threads
    if args.mode == "finetune":
        if not args.source:
            raise OptimizeError("--mode finetune needs --source module:factory (the model in PyTorch)")
        recipe.model = args.source
        recipe.weights = args.weights or str(
            parent_weights(args.source, parent_onnx, data_dir / "parent.safetensors")
        )
        step = ("finetune", {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size})
        reference_acc = default_acc  # the reference is the default version's function itself
    else:
        fp32 = (read_manifest(model_dir / parent) or {}).get("parent")
        if not fp32:
            raise OptimizeError(f"version {parent}'s manifest names no parent: nothing to re-calibrate from")
        recipe.model = str(model_dir / str(fp32) / MODEL_FILE)
        step = ("quantize-static", {"method": "minmax"})
        reference_acc = holdout_accuracy(Path(recipe.model), hold_inputs, hold_labels)
    # accuracy_drop is measured against the pipeline's reference: candidate >= default + min_improvement
    recipe.gates.max_accuracy_drop = (reference_acc - default_acc) * 100 - args.min_improvement
    recipe.variants = [VariantSpec(f"retrained-{args.mode}", [step])]
    lineage = {
        "retrain": {
            "parent": parent,
            "mode": args.mode,
            "data_window": {"since": args.since, "until": args.until, "first": times[0], "last": times[-1]},
            "rows": counts,
            "sample": args.sample,
            "payload_files": files,
            "data_files": {name: sha256_of(data_dir / name) for name in ("train.npz", "holdout.npz")},
            "holdout_accuracy_of_parent": default_acc,
        }
    }
    from ortserve.optimize.context import Progress
    from ortserve.optimize.pipeline import run

    result = run(recipe, Progress(args.quiet), manifest_extra=lineage)
    (variant,) = result.variants
    accuracy = reference_acc - variant.metrics.get("accuracy_drop", 0.0) / 100
    summary = {
        "model": args.model,
        "parent": parent,
        "version": str(variant.version) if variant.version else None,
        "accepted": variant.accepted,
        "reasons": variant.reasons,
        "holdout_accuracy": {"parent": round(default_acc, 4), "candidate": round(accuracy, 4)},
        "rows": counts,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    if not variant.version:
        _say(args, "not published: " + "; ".join(variant.reasons))
        return 1
    _say(
        args, f"published {args.model} version {variant.version} (report: {result.report_dir / 'report.md'})"
    )
    if args.canary:
        _canary(args, str(variant.version))
    return 0


def _canary(args: argparse.Namespace, version: str) -> None:
    import grpc

    from ortserve.admin_client import AdminClient

    spec = args.rollout_spec.read_text() if args.rollout_spec else ""
    key = args.api_key or os.environ.get("ORTSERVE_API_KEY")
    deadline = time.monotonic() + args.wait
    with AdminClient(args.server, root_certificates=args.root_certificates, api_key=key) as admin:
        while True:
            try:
                status = admin.start_rollout(
                    args.model, version, spec=spec, reason="ortserve-optimize retrain"
                )
                break
            except grpc.RpcError as e:
                code = e.code()  # type: ignore[attr-defined]
                if code == grpc.StatusCode.NOT_FOUND and time.monotonic() < deadline:
                    time.sleep(0.5)  # the server loads the new version at its next scan (--poll-interval)
                    continue
                raise OptimizeError(f"--canary: {code.name}: {e.details()}") from None  # type: ignore[attr-defined]
    _say(args, f"rollout {status.id} started: {status.state}, {status.weight}% to version {version}")
