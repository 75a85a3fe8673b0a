"""Triton's own C++ load tool, ``perf_analyzer``, as a second, independent client for ortserve.

It ships in the manylinux wheel of ``tritonclient==2.45.0`` (later wheels dropped it), which goes
into its own virtual environment (``benchmarks/.venv-perf``, made once) so that the project's
tritonclient stays as it is. The binary needs Debian's ``libb64-0d`` (``make perf-analyzer``
installs it) and the CUDA runtime library from PyPI's ``nvidia-cuda-runtime-cu12`` on
``LD_LIBRARY_PATH``, even to drive a CPU server. It asks the server for the model's
configuration (Triton's ModelConfig RPC), so it runs against ortserve only, not MLServer.

    venv = ensure_perf_analyzer()
    point = perf_analyzer(venv, "127.0.0.1:8001", "digits", {"input": (1, 64)}, concurrency=32)
    point.throughput_rps, point.p50_ms, point.p99_ms
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers.mlserver_peer import PeerUnavailable

__all__ = ["TRITONCLIENT", "PerfPoint", "ensure_perf_analyzer", "perf_analyzer"]

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE.parent / ".venv-perf"
TRITONCLIENT = "tritonclient==2.45.0"
REQUIREMENTS = [TRITONCLIENT, "nvidia-cuda-runtime-cu12"]


@dataclass
class PerfPoint:
    concurrency: int
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    settings: str  # the command's load options, for the report


def _libb64() -> bool:
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    return "libb64.so.0d" in out


def _cudart(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12"))
    return found[0].parent if found else None


def ensure_perf_analyzer(path: Path = DEFAULT_VENV, *, timeout: float = 900) -> Path:
    """The venv holding perf_analyzer (made once); PeerUnavailable says what is missing."""
    if not _libb64():
        raise PeerUnavailable("perf_analyzer needs Debian's libb64-0d: run `make perf-analyzer`")
    stamp = path / ".ortserve-bench-requirements"
    if (
        (path / "bin" / "perf_analyzer").exists()
        and stamp.exists()
        and stamp.read_text().split() == REQUIREMENTS
    ):
        return path
    try:
        if not (path / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
        subprocess.run(
            [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS],
            check=True,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or "").splitlines()[-10:])
        raise PeerUnavailable(f"could not install {' '.join(REQUIREMENTS)} into {path}:\n{tail}") from e
    except (subprocess.SubprocessError, OSError) as e:
        raise PeerUnavailable(f"could not install {' '.join(REQUIREMENTS)} into {path}: {e}") from e
    if not (path / "bin" / "perf_analyzer").exists() or _cudart(path) is None:
        raise PeerUnavailable(f"{TRITONCLIENT} in {path} has no bin/perf_analyzer or no libcudart")
    stamp.write_text("\n".join(REQUIREMENTS) + "\n")
    return path


def perf_analyzer(
    venv: Path,
    target: str,
    model: str,
    shapes: dict[str, tuple[int, ...]],
    *,
    concurrency: int = 32,
    window_ms: int = 5000,
    timeout: float = 300,
) -> PerfPoint:
    """One closed-loop point at ``concurrency`` (gRPC, synchronous requests, one row each)."""
    cudart = _cudart(venv)
    load = [
        "-i",
        "grpc",
        "--concurrency-range",
        str(concurrency),
        "--measurement-interval",
        str(window_ms),
        # a shared 2-core machine rarely gives perf_analyzer's default 10% stability: 30% over up to 8 windows
        "--stability-percentage",
        "30",
        "--max-trials",
        "8",
    ]
    for name, shape in shapes.items():
        load += ["--shape", f"{name}:{','.join(map(str, shape))}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "perf.csv"
        proc = subprocess.run(
            [str(venv / "bin" / "perf_analyzer"), "-m", model, "-u", target, *load, "-f", str(out)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"LD_LIBRARY_PATH": str(cudart), "PATH": "/usr/bin:/bin"},
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-5:])
            raise PeerUnavailable(f"perf_analyzer failed ({proc.returncode}): {tail}")
        (row,) = list(csv.DictReader(out.open()))
    return PerfPoint(
        concurrency=int(row["Concurrency"]),
        throughput_rps=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) / 1000,
        p90_ms=float(row["p90 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
        settings=" ".join(load),
    )
