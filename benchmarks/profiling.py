"""Where a server's time goes at one load point: py-spy samples the server process (and its
workers) while the load generator runs, and the functions with the most own time (GIL held) are
ranked.

    profile_point(server, CNN, duration=5.0)   # -> {"top": [(frame, share), ...], "samples": ...}
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ModelSpec
from benchmarks.loadgen import run_async
from benchmarks.sweep import Series, sweep

__all__ = ["profile_point", "py_spy"]


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def profile_point(
    server: Any, spec: ModelSpec, duration: float, concurrency: int = 32, top: int = 12
) -> dict[str, Any]:
    """Sample ``server`` (an ortserve.testing.ServerProcess) for about ``duration`` seconds under
    one-row v1 Predict requests of ``spec`` at ``concurrency``; an ``error`` entry says why not."""
    exe = py_spy()
    if exe is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    seconds = max(1, int(duration))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--subprocesses",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # py-spy attaches
        s = Series("profiled", spec.name)
        run_async(sweep(s, server.target, "v1", spec.name, spec, (concurrency,), seconds + 0.5, 0.0, None))
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0 or not out.exists():
            return {"error": f"py-spy failed ({proc.returncode}): {err.strip()[-300:]}"}
        stacks = out.read_text().splitlines()
    own: dict[str, int] = {}
    total = 0
    for line in stacks:
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        leaf = frames.split(";")[-1]
        own[leaf] = own.get(leaf, 0) + int(count)
        total += int(count)
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "model": spec.name,
        "concurrency": concurrency,
        "seconds": seconds,
        "samples": total,
        "throughput_rps": s.points[0].throughput_rps if s.points else 0.0,
        "mode": "GIL held (--gil)",
        "top": [(frame, n / total) for frame, n in ranked] if total else [],
    }
