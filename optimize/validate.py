"""Fidelity of a variant against the reference: max abs error, mean cosine, top-1 agreement, accuracy."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.dtypes import TensorSpec
from ortserve.optimize.specs import Dataset

__all__ = ["compare", "primary_output", "run_onnx", "run_torch", "token_mask"]

#: Rows per run when computing outputs; large enough to be fast, small enough for transformers.
EVAL_BATCH = 32


def run_onnx(path: Path, data: Dataset, batch: int = EVAL_BATCH, threads: int = 0) -> list[np.ndarray]:
    """All outputs of an ONNX model over the data, concatenated along the batch axis."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    parts: list[list[np.ndarray]] = []
    for feed in data.batches(batch):
        parts.append(sess.run(None, {n: feed[n] for n in names}))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def run_torch(
    module: Any, specs: list[TensorSpec], data: Dataset, batch: int = EVAL_BATCH
) -> list[np.ndarray]:
    """All outputs of a torch module (positional inputs in signature order) over the data."""
    import torch

    parts: list[list[np.ndarray]] = []
    with contextlib.suppress(NotImplementedError):  # torch.export programs' modules have no eval switch
        module.eval()
    with torch.inference_mode():
        for feed in data.batches(batch):
            out = module(*[torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in specs])
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            parts.append([o.detach().float().numpy() if o.is_floating_point() else o.numpy() for o in outs])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def primary_output(outputs: list[np.ndarray]) -> int:
    """The output the metrics are computed on: the first floating-point one."""
    for i, o in enumerate(outputs):
        if o.dtype.kind == "f":
            return i
    return 0


def _looks_like_scores(out: np.ndarray) -> bool:
    """Class scores ([batch, classes]) rather than an embedding: top-1 is meaningful only for the former.
    Embeddings are unit-normalized or wide; scores are neither, or are probabilities (rows summing to 1)."""
    if out.ndim != 2 or out.shape[1] < 2 or out.dtype.kind != "f":
        return False
    rows = out.astype(np.float64)
    if np.allclose(rows.sum(axis=1), 1.0, atol=1e-3) and (rows >= 0).all():
        return True
    unit = np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3)
    return not unit and out.shape[1] <= 1000


def _accuracy(out: np.ndarray, labels: np.ndarray) -> float | None:
    if out.ndim != 2 or out.shape[1] < 2 or labels.ndim != 1:
        return None
    return float(np.mean(out.argmax(axis=1) == labels))


def token_mask(output: np.ndarray, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
    """The ``attention_mask`` input when ``output`` holds token states ``[batch, sequence, hidden]`` of the
    same batch and sequence (a transformer's hidden states), else None."""
    mask = inputs.get("attention_mask")
    if mask is None or output.ndim != 3 or mask.ndim != 2 or mask.shape != output.shape[:2]:
        return None
    return mask.astype(bool)


def _token_cosines(r: np.ndarray, c: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row: the mean cosine of its real tokens' states (padding positions hold states no one reads)."""
    dot = np.sum(r * c, axis=2)
    norms = np.linalg.norm(r, axis=2) * np.linalg.norm(c, axis=2)
    cos = np.where(norms == 0, 1.0, dot / np.maximum(norms, 1e-30))
    real = np.maximum(mask.sum(axis=1), 1)
    return np.where(mask, cos, 0.0).sum(axis=1) / real


def compare(
    ref: list[np.ndarray],
    cand: list[np.ndarray],
    labels: np.ndarray | None = None,
    inputs: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics of ``cand`` against ``ref`` on the primary output.

    ``cosine`` is the mean over rows of the cosine between flattened rows; for token states
    (``[batch, sequence, hidden]`` with an ``attention_mask`` among ``inputs``) it is the mean over rows of the
    mean cosine of each real token's state, padding left out (``cosine_over`` says which). ``top1_agreement``
    is computed where the output is ``[batch, classes]``; ``accuracy_drop`` is in percentage points and needs
    labels."""
    i = primary_output(ref)
    if ref[i].shape != cand[i].shape:
        return {"error": f"output shape {cand[i].shape} differs from the reference's {ref[i].shape}"}
    mask = token_mask(ref[i], inputs or {})
    r = ref[i].astype(np.float64).reshape(len(ref[i]), -1)
    c = cand[i].astype(np.float64).reshape(len(cand[i]), -1)
    diff = np.abs(r - c)
    nr = np.linalg.norm(r, axis=1)
    nc = np.linalg.norm(c, axis=1)
    denom = np.maximum(nr * nc, 1e-30)
    cos = np.where((nr == 0) & (nc == 0), 1.0, np.sum(r * c, axis=1) / denom)
    if mask is not None:
        cos = _token_cosines(ref[i].astype(np.float64), cand[i].astype(np.float64), mask)
    worst = int(np.argmax(diff)) if diff.size else 0
    metrics: dict[str, Any] = {
        "output": i,
        "rows": len(r),
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "max_abs_err_at": [int(worst // r.shape[1]), int(worst % r.shape[1])] if diff.size else [0, 0],
        "mean_abs_err": float(diff.mean()) if diff.size else 0.0,
        "cosine": float(np.mean(cos)),
        "min_cosine": float(np.min(cos)),
        "cosine_over": "real tokens (attention_mask)" if mask is not None else "rows",
    }
    if ref[i].ndim == 2 and (labels is not None or _looks_like_scores(ref[i])):  # top-1 needs [rows, classes]
        metrics["top1_agreement"] = float(np.mean(ref[i].argmax(1) == cand[i].argmax(1)))
    if labels is not None:
        ra, ca = _accuracy(ref[i], labels), _accuracy(cand[i], labels)
        if ra is not None and ca is not None:
            metrics["reference_accuracy"] = ra
            metrics["accuracy"] = ca
            metrics["accuracy_drop"] = round((ra - ca) * 100, 6)
    return metrics
