"""Logs that clients cannot forge or flood (issue 10, defect 6): text lines escape control
characters in messages and fields, tracebacks are indented under their event, and client strings
are quoted short."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from ortserve.client import Client
from ortserve.ops.logs import TextFormatter
from tests import onnx_models as m

ROOT = Path(__file__).resolve().parents[2]
FORGED = "2026-01-01 00:00:00,000 ERROR ortserve: forged"
EVENT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def _record(message: str, *args, exc: BaseException | None = None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("ortserve.test", logging.ERROR, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.__dict__.update(extra)
    return record


def test_a_text_line_with_a_traceback_cannot_be_forged():
    try:
        raise ValueError(f"bad value\n{FORGED}")
    except ValueError as e:
        record = _record("request %s: internal error", f"id\n{FORGED}", exc=e, request_id=f"r\n{FORGED}")
    lines = TextFormatter().format(record).split("\n")
    assert EVENT.match(lines[0]) and FORGED not in lines[0].split("\\n")[0]
    assert all(line.startswith("  | ") for line in lines[1:]), lines
    assert not any(line.startswith(FORGED) for line in lines)


def test_escape_covers_terminal_control_and_unicode_line_separators():
    text = TextFormatter().format(_record("a\x1b[31mred\rb\u2028c\x85d"))
    assert "\n" not in text and "\x1b" not in text and "\u2028" not in text and "\x85" not in text
    assert text.endswith("a\\x1b[31mred\\rb\\u2028c\\x85d")


def test_request_ids_in_text_logs_are_escaped_and_bounded(tmp_path):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    cmd = [sys.executable, "-m", "ortserve", "--model-repository", str(tmp_path), "--port", "0"]
    cmd += ["--metrics-port", "-1", "--log-level", "debug", "--access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        port = 0
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "serving gRPC on" in line:
                port = int(line.split("serving gRPC on 127.0.0.1:")[1].split(",")[0])
                break
        a = np.ones((1, 4), np.float32)
        with Client(f"127.0.0.1:{port}") as c:
            c.predict("addmul", {"a": a, "b": a}, request_id=f"ok\n{FORGED}")
            with pytest.raises(grpc.RpcError):
                c.predict("addmul", {"a": a}, request_id=f"bad\n{FORGED}")
            c.predict("addmul", {"a": a, "b": a}, request_id="x" * 100_000)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    lines += rest.splitlines(keepends=True)
    assert not any(line.startswith(FORGED) for line in lines)
    access = [line for line in lines if " ortserve.access: " in line]
    assert len(access) == 3 and all(len(line) < 2000 for line in access), [len(x) for x in access]
    assert any("'ok\\n2026-01-01" in line for line in access)
