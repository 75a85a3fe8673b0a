"""Feedback at the edge: ``ortserve.v1.Inference/Feedback`` and its Open Inference Protocol form.

Over V2 (Triton and KServe clients) feedback is a ModelInfer to the virtual model ``FEEDBACK_MODEL``
(``ortserve.feedback``; no repository model can take that name's place) with, one row per row of
the requests it is about:

    request_id  BYTES [n]         the id of the request each row belongs to (a request's rows in order)
    label       INT64/INT32 [n]   the true class of each row (classifiers), or
    target      FP32/FP64 [n]     the true value of each row (regressors)
    reward      FP32/FP64 [n]     optional; the first row of each request carries its reward (NaN: none)

and the answer has ``status`` BYTES [n]: each row's request's status (correct, incorrect, scored,
unknown, duplicate, invalid).
"""

from __future__ import annotations

import math

import numpy as np

from ortserve._proto.inference import grpc_service_pb2 as pb2
from ortserve._proto.ortserve.v1 import inference_pb2 as pb
from ortserve.core import FeedbackItem, FeedbackResult
from ortserve.edge.codec import v2_from_numpy
from ortserve.errors import InvalidInput

__all__ = ["FEEDBACK_MODEL", "MAX_ITEMS", "from_pb", "from_v2", "to_pb", "to_v2"]

FEEDBACK_MODEL = "ortserve.feedback"
MAX_ITEMS = 10_000


def from_pb(request: pb.FeedbackRequest) -> list[FeedbackItem]:
    if len(request.items) > MAX_ITEMS:
        raise InvalidInput(f"{len(request.items)} feedback items, expected at most {MAX_ITEMS} per call")
    return [
        FeedbackItem(
            i.request_id,
            tuple(i.labels),
            tuple(i.targets),
            i.reward if i.HasField("reward") else None,
        )
        for i in request.items
    ]


def to_pb(results: list[FeedbackResult]) -> pb.FeedbackResponse:
    return pb.FeedbackResponse(
        results=[
            pb.FeedbackResult(
                request_id=r.request_id,
                status=r.status,
                model=r.model,
                version=r.version,
                variant=r.variant,
                rows=r.rows,
                correct=r.correct,
                message=r.message,
            )
            for r in results
        ]
    )


def _column(inputs: dict[str, np.ndarray], name: str, kinds: str, rows: int) -> np.ndarray | None:
    a = inputs.pop(name, None)
    if a is None:
        return None
    if a.dtype.kind not in kinds or a.ndim != 1 or len(a) != rows:
        raise InvalidInput(
            f"input '{name}': {a.dtype} {list(a.shape)}, expected {rows} "
            f"{'integers' if kinds == 'iu' else 'numbers'} in one dimension (one per request_id)"
        )
    return a


def from_v2(inputs: dict[str, np.ndarray]) -> tuple[list[FeedbackItem], list[int]]:
    """The items, and the row count of each (its rows answer with its status)."""
    inputs = dict(inputs)
    ids = inputs.pop("request_id", None)
    if ids is None or ids.ndim != 1 or ids.dtype != object:
        raise InvalidInput(f"model '{FEEDBACK_MODEL}': expected a BYTES input 'request_id' [n]")
    n = len(ids)
    labels = _column(inputs, "label", "iu", n)
    targets = _column(inputs, "target", "f", n)
    rewards = _column(inputs, "reward", "f", n)
    if inputs:
        raise InvalidInput(
            f"model '{FEEDBACK_MODEL}': unknown input '{sorted(inputs)[0]}', expected request_id, "
            "label or target, and reward"
        )
    if (labels is None) == (targets is None):
        raise InvalidInput(f"model '{FEEDBACK_MODEL}': expected either 'label' or 'target', one per row")
    items: list[FeedbackItem] = []
    sizes: list[int] = []
    start = 0
    for end in range(1, n + 1):
        if end < n and ids[end] == ids[start]:
            continue
        reward = None if rewards is None or math.isnan(rewards[start]) else float(rewards[start])
        items.append(
            FeedbackItem(
                str(ids[start]),
                tuple(int(v) for v in labels[start:end]) if labels is not None else (),
                tuple(float(v) for v in targets[start:end]) if targets is not None else (),
                reward,
            )
        )
        sizes.append(end - start)
        start = end
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"{len(items)} feedback items, expected at most {MAX_ITEMS} per call")
    return items, sizes


def to_v2(results: list[FeedbackResult], sizes: list[int], request_id: str) -> pb2.ModelInferResponse:
    status = np.array([r.status for r, k in zip(results, sizes) for _ in range(k)], dtype=object)
    out = pb2.ModelInferResponse(model_name=FEEDBACK_MODEL, id=request_id)
    datatype, shape, data = v2_from_numpy(status)
    out.outputs.add(name="status", datatype=datatype, shape=shape)
    out.raw_output_contents.append(data)
    return out
