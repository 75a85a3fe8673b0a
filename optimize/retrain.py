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
import sys
from pathlib import Path

from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.retrain_data import collect
from ortserve.optimize.retrain_run import retrain

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return retrain(args)
    except OptimizeError as e:
        print(f"ortserve-optimize retrain: error: {e}", file=sys.stderr)
        return 2
