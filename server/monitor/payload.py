"""``--payload-log DIR``: a sample of requests (inputs, outputs, who served them) and every feedback item,
as CloudEvents JSON lines (the format is :mod:`ortserve.repository.payload`), for retraining and audits.

``PayloadLog`` is a core hook. On the event loop it only decides (a random check against the
``[monitoring] payload_log_rate`` of the version that served the request, else ``sample_rate``; a
model whose rate is 0 has nothing written, its feedback items neither) and queues a reference to the
request and response; a full queue drops the record
(``ortserve_payload_dropped_total{reason="queue_full"}``). One writer thread encodes and appends
them to ``DIR/<model>/<UTC time>-<pid>-<n>.jsonl`` (folders 0700, files 0600: payloads are user
data), starts a new file when one reaches ``max_file_bytes``, and deletes the oldest closed files
under ``DIR`` while the folder holds more than ``max_bytes``. ``close`` writes what is queued and
closes the files.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ortserve.core import Completed, FeedbackItem, FeedbackResult, ModelVersion
from ortserve.errors import OK, ServeError
from ortserve.metrics import UNKNOWN_MODEL, Metrics
from ortserve.repository.payload import FEEDBACK_TYPE, INFERENCE_TYPE, SUFFIX, encode_tensor, event

__all__ = ["PayloadLog"]

log = logging.getLogger("ortserve.payload")

_STOP = object()


class PayloadLog:
    def __init__(
        self,
        directory: Path,
        metrics: Metrics,
        *,
        sample_rate: float = 0.01,
        max_file_bytes: int = 16 << 20,
        max_bytes: int = 1 << 30,
        queue_size: int = 4096,
        lists: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.max_file_bytes = max_file_bytes
        self.max_bytes = max_bytes
        self.lists = lists
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._random = random.random
        self._host = socket.gethostname()
        self._files: dict[str, tuple[Path, Any, int]] = {}  # model -> (path, file, size)
        self._seq = 0
        self._feedback_seq = 0
        self._disk = 0
        self._thread: threading.Thread | None = None
        self._dropped = metrics.payload_dropped.labels("queue_full")
        self._versions: Callable[[str], Sequence[ModelVersion]] | None = None

    def follow(self, versions: Callable[[str], Sequence[ModelVersion]]) -> None:
        """Where feedback items find the rate of the model they are about (a model's loaded versions)."""
        self._versions = versions

    # -- on the event loop -----------------------------------------------------------------------
    def on_complete(self, event: Completed) -> None:
        route = event.route
        if route is None or event.response is None or event.outcome != OK:
            return
        rate = route.version.config.monitoring.payload_log_rate
        if self._random() >= (self.sample_rate if rate is None else rate):
            return
        self._put((time.time(), event))

    def feedback(self, item: FeedbackItem, result: FeedbackResult) -> None:
        """Every feedback item, joined or not (the retraining job joins them to the inferences), except
        those about a loaded model whose ``payload_log_rate`` is 0."""
        if result.model and self._versions is not None:
            try:
                loaded = self._versions(result.model)
            except ServeError:  # not loaded now: its config is unknown, the item is written
                loaded = ()
            if loaded and loaded[0].config.monitoring.payload_log_rate == 0:
                return
        self._put((time.time(), (item, result)))

    def _put(self, record: Any) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped.inc()

    # -- the writer thread -----------------------------------------------------------------------
    def start(self) -> None:
        """Create the folder (0700) and start the writer; OSError when the folder cannot be made."""
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True)
        elif self.directory.stat().st_mode & 0o077:
            log.warning(
                "payload log folder %s can be read by other users: payloads are user data", self.directory
            )
        self._disk = sum(size for _, size, _ in _files(self.directory))
        self.metrics.payload_bytes.set(self._disk)
        self._thread = threading.Thread(target=self._write_loop, name="payload-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("payload log: the writer did not take the stop request within %.0fs", timeout)
        self._thread.join(timeout)
        self._thread = None

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < 256:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines: dict[str, list[str]] = {}
            for record in batch:
                if record is _STOP:
                    stop = True
                    continue
                try:
                    model, line = self._encode(*record)
                except Exception as e:  # a record that cannot be encoded must not stop the log
                    log.warning("payload log: record not written: %s: %s", type(e).__name__, e)
                    continue
                lines.setdefault(model, []).append(line)
            for model, chunk in lines.items():
                self._append(model, chunk)
        for _, f, _ in self._files.values():
            f.close()
        self._files.clear()

    def _encode(self, at: float, record: Any) -> tuple[str, str]:
        if isinstance(record, Completed):
            request, response = record.request, record.response
            assert response is not None
            data: dict[str, Any] = {
                # arrays: the core decoded them before the request ran (ortserve.tensors)
                "inputs": {
                    k: encode_tensor(cast(np.ndarray, v), self.lists) for k, v in request.inputs.items()
                },
                "outputs": {k: encode_tensor(v, self.lists) for k, v in response.outputs.items()},
            }
            source = f"/ortserve/{self._host}/{response.model}/{response.version}"
            e = event(
                INFERENCE_TYPE,
                response.request_id,
                source,
                response.model,
                at,
                data,
                model=response.model,
                version=response.version,
                variant=response.variant,
                api=request.api,
                durationms=round(record.duration_s * 1000, 3),
            )
            return response.model, json.dumps(e, separators=(",", ":"))
        item, result = record
        self._feedback_seq += 1
        data = {
            "request_id": item.request_id,
            "labels": list(item.labels),
            "targets": list(item.targets),
            "reward": item.reward,
            "status": result.status,
            "correct": result.correct,
            "rows": result.rows,
        }
        model = result.model or UNKNOWN_MODEL
        e = event(
            FEEDBACK_TYPE,
            f"{item.request_id}/feedback/{self._feedback_seq}",
            f"/ortserve/{self._host}/{model}/{result.version}",
            item.request_id,
            at,
            data,
            model=result.model,
            version=result.version,
            variant=result.variant,
        )
        return model, json.dumps(e, separators=(",", ":"))

    def _append(self, model: str, chunk: list[str]) -> None:
        data = ("\n".join(chunk) + "\n").encode()
        try:
            path, f, size = self._files.get(model) or self._open(model)
            if size and size + len(data) > self.max_file_bytes:
                f.close()
                path, f, size = self._open(model)
            f.write(data)
            f.flush()
        except OSError as e:
            self.metrics.payload_dropped.labels("io_error").inc(len(chunk))
            log.error("payload log: cannot write %s records for %s: %s", len(chunk), model, e)
            self._files.pop(model, None)
            return
        self._files[model] = (path, f, size + len(data))
        self._disk += len(data)
        self.metrics.payload_records.labels(model).inc(len(chunk))
        if self._disk > self.max_bytes:
            self._trim()
        self.metrics.payload_bytes.set(self._disk)

    def _open(self, model: str) -> tuple[Path, Any, int]:
        folder = self.directory / model
        folder.mkdir(mode=0o700, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = folder / f"{stamp}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        f = os.fdopen(fd, "ab")
        self._files[model] = (path, f, 0)
        return path, f, 0

    def _trim(self) -> None:
        """Delete the oldest closed files until the folder fits ``max_bytes`` again."""
        open_now = {path for path, _, _ in self._files.values()}
        found = _files(self.directory)
        total = sum(size for _, size, _ in found)
        for path, size, _ in sorted(found, key=lambda t: t[2]):
            if total <= self.max_bytes:
                break
            if path in open_now:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
        self._disk = total


def _files(directory: Path) -> list[tuple[Path, int, float]]:
    """(path, size, mtime) of every payload file under ``directory``."""
    out = []
    for path in directory.glob(f"*/*{SUFFIX}"):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path, st.st_size, st.st_mtime))
    return out
