"""Run the real server in a subprocess for tests and benchmarks.

from ortserve.testing import ServerProcess
server = ServerProcess(Path("models"))      # python -m ortserve on free loopback ports
... Client(server.target) ...
server.stop()                                 # SIGTERM, returns the exit code
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["ServerProcess"]


class ServerProcess:
    """``python -m ortserve`` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(
        self, repo: Path, *args: str, env: dict[str, str] | None = None, ready_timeout: float = 60
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "ortserve",
            "--model-repository",
            str(repo),
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self._ready = threading.Event()
        self.port = self.metrics_port = self.health_port = 0
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(ready_timeout):
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.raw[-30:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.lines.append(event)
            if event.get("event") == "ready":
                self.port, self.metrics_port = event["grpc_port"], event["metrics_port"]
                self.health_port = event.get("health_port", 0)
                self._ready.set()
        self._ready.set()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def logs(self, contains: str) -> list[dict]:
        return [e for e in self.lines if contains in e.get("message", "")]

    def wait_log(self, contains: str, timeout: float = 10.0, after: int | None = None) -> dict:
        """The last line containing ``contains``, once there is one; with ``after``, the first of
        those past the ``after`` already seen (``len(server.logs(contains))`` before the action)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.logs(contains)
            if len(found) > (after or 0):
                return found[-1] if after is None else found[after]
            time.sleep(0.05)
        raise AssertionError(f"no log line containing {contains!r}; last lines:\n" + "".join(self.raw[-20:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
