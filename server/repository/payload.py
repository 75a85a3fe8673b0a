"""The payload log format: JSON lines, one CloudEvents 1.0 event (structured mode) per line.

The server writes them (``ortserve --payload-log DIR``, :mod:`ortserve.monitor.payload`); retraining
reads them back with :func:`read_payload_log` (numpy arrays again) and :func:`labelled` (inputs joined
to the ground truth that feedback gave). Files: ``DIR/<model>/<UTC time>-<pid>-<n>.jsonl``, mode 0600.

An inference (``type`` ``ortserve.inference.v1``; ``id`` is the request id)::

    {"specversion": "1.0", "id": "6f2a-1c", "type": "ortserve.inference.v1",
     "source": "/ortserve/<host>/digits/1", "subject": "digits", "time": "2026-11-26T03:00:00.123456Z",
     "datacontenttype": "application/json", "ortservemodel": "digits", "ortserveversion": "1",
     "ortservevariant": "stable", "ortserveapi": "v1", "ortservedurationms": 1.25,
     "data": {"inputs": {"input": {"dtype": "float32", "shape": [1, 64], "b64": "AAAA..."}},
              "outputs": {"label": {"dtype": "int64", "shape": [1], "b64": "BwAAAAAAAAA="}}}}

A tensor is ``{"dtype", "shape", "b64"}`` (raw little-endian bytes in C order, base64) or, with
``--payload-log-encoding lists``, ``{"dtype", "shape", "data": [...]}`` (nested lists); string tensors
are always lists. Ground truth (``type`` ``ortserve.feedback.v1``; ``subject`` is the request id it is
about; logged whenever the payload log is on, not sampled)::

    {"specversion": "1.0", "id": "6f2a-1c/feedback/1", "type": "ortserve.feedback.v1", "subject": "6f2a-1c",
     ..., "data": {"request_id": "6f2a-1c", "labels": [7], "targets": [], "reward": null, "status": "correct"}}
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FEEDBACK_TYPE",
    "INFERENCE_TYPE",
    "PayloadRecord",
    "decode_tensor",
    "encode_tensor",
    "event",
    "join_labelled",
    "labelled",
    "parse_payload_lines",
    "payload_files",
    "read_payload_log",
]

INFERENCE_TYPE = "ortserve.inference.v1"
FEEDBACK_TYPE = "ortserve.feedback.v1"
SUFFIX = ".jsonl"


def encode_tensor(a: np.ndarray, lists: bool = False) -> dict[str, Any]:
    if a.dtype.kind in "OUS":
        return {"dtype": "string", "shape": list(a.shape), "data": [str(v) for v in a.ravel().tolist()]}
    if lists:
        return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.tolist()}
    data = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
    return {"dtype": a.dtype.name, "shape": list(a.shape), "b64": base64.b64encode(data).decode("ascii")}


def decode_tensor(d: Mapping[str, Any]) -> np.ndarray:
    shape = tuple(d["shape"])
    if d["dtype"] == "string":
        return np.array(d["data"], dtype=object).reshape(shape)
    dtype = np.dtype(d["dtype"]).newbyteorder("<")
    if "b64" in d:
        return np.frombuffer(base64.b64decode(d["b64"]), dtype).reshape(shape)
    return np.asarray(d["data"], dtype).reshape(shape)


def event(
    kind: str, event_id: str, source: str, subject: str, at: float, data: Any, **ext: Any
) -> dict[str, Any]:
    """One CloudEvents 1.0 event as a dict; ``ext`` become extension attributes ``ortserve<name>``."""
    when = _dt.datetime.fromtimestamp(at, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "type": kind,
        "source": source,
        "subject": subject,
        "time": when,
        "datacontenttype": "application/json",
    }
    out.update({f"ortserve{k}": v for k, v in ext.items()})
    out["data"] = data
    return out


@dataclass
class PayloadRecord:
    type: str
    id: str
    model: str
    version: str
    variant: str
    time: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    feedback: dict[str, Any] | None = None  # the data of a feedback event


def payload_files(directory: Path, model: str | None = None) -> list[Path]:
    """The log's files (one model's with ``model``), in time order within each model."""
    root = Path(directory)
    folders = [root / model] if model else sorted(p for p in root.iterdir() if p.is_dir())
    return [path for folder in folders for path in sorted(folder.glob(f"*{SUFFIX}"))]


def parse_payload_lines(lines: Iterable[str | bytes]) -> Iterator[PayloadRecord]:
    """The records of a log file's lines; a line that does not parse (a file cut short) is skipped."""
    for line in lines:
        try:
            yield _record(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue


def read_payload_log(directory: Path, model: str | None = None) -> Iterator[PayloadRecord]:
    """Every record under ``directory`` (one model's with ``model``), file by file in time order.
    A line that does not parse (a file cut short by a crash) is skipped."""
    for path in payload_files(directory, model):
        with open(path) as f:
            yield from parse_payload_lines(f)


def _record(e: dict[str, Any]) -> PayloadRecord:
    data = e["data"]
    base = (e["type"], e["id"], e.get("ortservemodel", ""), e.get("ortserveversion", ""))
    extra = (e.get("ortservevariant", ""), e.get("time", ""))
    if e["type"] == FEEDBACK_TYPE:
        return PayloadRecord(*base, *extra, feedback=data)
    inputs = {k: decode_tensor(v) for k, v in data.get("inputs", {}).items()}
    outputs = {k: decode_tensor(v) for k, v in data.get("outputs", {}).items()}
    return PayloadRecord(*base, *extra, inputs=inputs, outputs=outputs)


def labelled(directory: Path, model: str) -> Iterator[tuple[PayloadRecord, dict[str, Any]]]:
    """(inference record, its feedback data) for each logged request of ``model`` that got ground truth
    that joined (the feedback's status is not unknown, duplicate or invalid)."""
    return join_labelled(read_payload_log(directory, model))


def join_labelled(records: Iterable[PayloadRecord]) -> Iterator[tuple[PayloadRecord, dict[str, Any]]]:
    """``labelled`` over records already read (a retraining job hashes the files it reads)."""
    seen: dict[str, PayloadRecord] = {}
    for r in records:
        if r.type == INFERENCE_TYPE:
            seen[r.id] = r
        elif r.feedback is not None and r.feedback.get("status") in ("correct", "incorrect", "scored"):
            found = seen.pop(r.feedback.get("request_id", ""), None)
            if found is not None:
                yield found, r.feedback
