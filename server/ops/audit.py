"""The audit log (``--audit-log audit.jsonl``): append-only JSON lines, hash-chained.

Each line is one JSON object; its last field is ``hash``, the sha256 of the line's text before
that field (the object closed where ``,"hash"`` starts), and its ``prev`` field is the ``hash`` of
the line before it (64 zeros for the first). Changing a line breaks its own hash; rewriting it
with a fresh hash breaks the next line's ``prev``; deleting lines breaks the ``prev`` of the line
after them. ``ortserve audit verify FILE`` checks the chain and names the first bad line. Cutting
lines off the end leaves a shorter valid chain: compare the line count and head hash that verify
prints with a copy kept elsewhere (a log shipper, a ticket).

Records are queued from the event loop and from the metrics port's HTTP threads (``record`` is
thread-safe; a bounded queue: a flood of denied calls cannot grow memory; what does not fit is
counted in ``ortserve_audit_dropped_total`` and the gap is written as a ``dropped`` record) and
written by one thread, a batch at a time with one fsync. Under ``--workers`` every process appends
to the same file: a batch is written under an exclusive ``flock`` after reading the hash of the
file's last line, so the chain stays one chain. The file is created with mode 0600.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ortserve.metrics import Metrics

__all__ = ["GENESIS", "AuditLog", "ChainReport", "verify_chain"]

log = logging.getLogger("ortserve.audit")

GENESIS = "0" * 64
_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
_STOP = object()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seal(record: dict[str, Any], prev: str) -> tuple[bytes, str]:
    """The line (without its newline) for ``record`` chained to ``prev``, and its hash."""
    body = json.dumps({**record, "prev": prev}, separators=(",", ":"), ensure_ascii=True, default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}'.encode(), digest


class AuditLog:
    def __init__(self, path: Path, metrics: Metrics | None = None, queue_size: int = 10_000) -> None:
        self.path = Path(path)
        self._metrics = metrics
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        mode = os.fstat(self._fd).st_mode & 0o777
        if mode & 0o077:
            log.warning("audit log %s is readable by others (mode %o): chmod 600 it", self.path, mode)
        self._size = -1  # file size after our last write; another process changed it when it differs
        self._prev = GENESIS
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one writer thread, and _dropped counted from any thread

    # -- from the event loop, or any thread ----------------------------------------------------
    def record(self, event: str, **fields: Any) -> None:
        """Queue one record (never blocks); ``time`` and ``pid`` are added here."""
        item = {"time": _now(), "event": event, "pid": os.getpid(), **fields}
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="ortserve-audit", daemon=True)
                    self._thread.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self._dropped += 1
            if self._metrics is not None:
                self._metrics.audit_dropped.inc()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then close the file."""
        if self._thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.error("audit log: the writer did not take the stop request; records may be lost")
            self._thread.join(timeout)
            self._thread = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 1024:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            records = [item for item in batch if item is not _STOP]
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                records.append({"time": _now(), "event": "dropped", "pid": os.getpid(), "count": dropped})
            try:
                self.write(records)
            except OSError as e:
                log.error("audit log %s: cannot write %d records: %s", self.path, len(records), e)
            if stop:
                return

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` now (under the file lock, chained to the file's last line), fsynced."""
        if not records:
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(self._fd).st_size
            prev, torn = (self._prev, False) if size == self._size else self._tail(size)
            lines = [b""] if torn else []
            for record in records:
                line, prev = seal(record, prev)
                lines.append(line)
            data = b"\n".join(lines) + b"\n"
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
            self._prev, self._size = prev, size + len(data)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self._metrics is not None:
            self._metrics.audit_records.inc(len(records))

    def _tail(self, size: int) -> tuple[str, bool]:
        """The hash of the file's last complete line, and whether a torn (unterminated) line ends it."""
        if size == 0:
            return GENESIS, False
        start = max(0, size - 65536)
        data = os.pread(self._fd, size - start, start)
        torn = not data.endswith(b"\n")
        for line in reversed(data.split(b"\n")):
            m = _TAIL.search(line)
            if m:
                return m.group(1).decode(), torn
        log.error("audit log %s: no chained line at its end; starting a new chain", self.path)
        return GENESIS, torn


@dataclass
class ChainReport:
    lines: int  # lines checked
    head: str  # hash of the last good line
    bad_line: int = 0  # 1-based number of the first bad line; 0 when the chain holds
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_line == 0


def verify_chain(path: Path) -> ChainReport:
    """Check every line's hash and its link to the line before; the first break is reported."""
    prev = GENESIS
    count = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            count = number
            line = raw.rstrip(b"\n")
            m = _TAIL.search(line)
            if not raw.endswith(b"\n") or m is None:
                return ChainReport(number - 1, prev, number, "not a complete audit line (torn or edited)")
            body = line[: m.start()] + b"}"
            if hashlib.sha256(body).hexdigest() != m.group(1).decode():
                return ChainReport(
                    number - 1, prev, number, "its text does not match its hash: the line was edited"
                )
            try:
                claimed = json.loads(body).get("prev")
            except ValueError:
                return ChainReport(number - 1, prev, number, "not JSON")
            if claimed != prev:
                what = "the first line" if number == 1 else f"line {number - 1}"
                return ChainReport(
                    number - 1,
                    prev,
                    number,
                    f"its prev does not match the hash of {what}: lines before it were deleted or rewritten",
                )
            prev = m.group(1).decode()
    return ChainReport(count, prev)
