"""MLServer as a benchmark peer: its own virtual environment, a model folder for the same ONNX
file, and the server process on 127.0.0.1, ready when its V2 ModelReady says so.

    from benchmarks.peers.mlserver_peer import MLServerProcess, ensure_venv
    venv = ensure_venv()                                   # benchmarks/.venv-mlserver, made once
    with MLServerProcess(venv, "digits", Path("models/digits/1/model.onnx"), intra_op_threads=2) as peer:
        ... V2 ModelInfer on peer.target ...

The environment is made with the Python running this (3.11) and pins MLServer and the same
onnxruntime version as ortserve's, so that both servers run the same kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["MLSERVER_VERSION", "MLServerProcess", "PeerUnavailable", "ensure_venv", "venv_versions"]

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE.parent / ".venv-mlserver"
MLSERVER_VERSION = "1.7.1"
RUNTIME = "ortserve_onnx_runtime"


class PeerUnavailable(RuntimeError):
    """The peer could not be installed or started; the benchmark reports it and goes on."""


def _requirements() -> list[str]:
    import onnxruntime

    # uvloop 0.22 made asyncio.get_event_loop() raise outside a running loop, which MLServer 1.7's
    # inference workers call at start ("There is no current event loop"): they die at once.
    return [
        f"mlserver=={MLSERVER_VERSION}",
        f"onnxruntime=={onnxruntime.__version__}",
        "numpy",
        "uvloop<0.22",
    ]


def ensure_venv(path: Path = DEFAULT_VENV, *, timeout: float = 900) -> Path:
    """Make (once) a virtual environment with MLServer at ``path``; return it.

    A stamp file records the requirements it was made for; a mismatch reinstalls them."""
    reqs = _requirements()
    stamp = path / ".ortserve-bench-requirements"
    if (path / "bin" / "mlserver").exists() and stamp.exists() and stamp.read_text().split() == reqs:
        return path
    try:
        if not (path / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
        subprocess.run(
            [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *reqs],
            check=True,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or "").splitlines()[-10:])
        raise PeerUnavailable(f"could not install {' '.join(reqs)} into {path}:\n{tail}") from e
    except (subprocess.SubprocessError, OSError) as e:
        raise PeerUnavailable(f"could not install {' '.join(reqs)} into {path}: {e}") from e
    stamp.write_text("\n".join(reqs) + "\n")
    return path


def venv_versions(path: Path = DEFAULT_VENV) -> dict[str, str]:
    code = (
        "import json, mlserver, onnxruntime, numpy, grpc; "
        "print(json.dumps({'mlserver': mlserver.__version__, "
        "'onnxruntime': onnxruntime.__version__, 'numpy': numpy.__version__, 'grpcio': grpc.__version__}))"
    )
    out = subprocess.run(
        [str(path / "bin" / "python"), "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MLServerProcess:
    """``mlserver start`` on a temporary folder holding one model: the ONNX file, model-settings.json
    with adaptive batching, and the custom runtime."""

    def __init__(
        self,
        venv: Path,
        name: str,
        onnx_path: Path,
        *,
        max_batch_size: int = 64,
        max_batch_time_s: float = 0.0005,
        intra_op_threads: int = 0,
        parallel_workers: int = 1,
        ready_timeout: float = 120,
    ) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="mlserver-peer-"))
        model_dir = self.dir / name
        model_dir.mkdir()
        shutil.copyfile(onnx_path, model_dir / "model.onnx")
        shutil.copyfile(HERE / f"{RUNTIME}.py", self.dir / f"{RUNTIME}.py")
        self.grpc_port, http_port, metrics_port = _free_port(), _free_port(), _free_port()
        (self.dir / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "grpc_port": self.grpc_port,
                    "http_port": http_port,
                    "metrics_port": metrics_port,
                    "debug": False,
                    "parallel_workers": parallel_workers,
                    "metrics_dir": str(self.dir / ".metrics"),
                    "environments_dir": str(self.dir / ".envs"),
                }
            )
        )
        (model_dir / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "implementation": f"{RUNTIME}.OnnxRuntimeModel",
                    "max_batch_size": max_batch_size,
                    "max_batch_time": max_batch_time_s,
                    "parameters": {"uri": "./model.onnx", "extra": {"intra_op_threads": intra_op_threads}},
                }
            )
        )
        self.settings = {
            "max_batch_size": max_batch_size,
            "max_batch_time_s": max_batch_time_s,
            "intra_op_threads": intra_op_threads,
            "parallel_workers": parallel_workers,
        }
        self.log = (self.dir / "mlserver.log").open("w")
        env = {**os.environ, "PYTHONPATH": str(self.dir), "MLSERVER_LOGGING_LEVEL": "WARNING"}
        env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "mlserver"), "start", str(self.dir)],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _wait_ready(self, timeout: float) -> None:
        import grpc

        from ortserve._proto.inference import grpc_service_pb2 as pb
        from ortserve._proto.inference import grpc_service_pb2_grpc as pb_grpc

        end = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise PeerUnavailable(f"mlserver exited with {self.proc.returncode}:\n{self.tail()}")
                try:
                    if stub.ModelReady(pb.ModelReadyRequest(name=self.name), timeout=2).ready:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.25)
        raise PeerUnavailable(f"mlserver not ready after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        try:
            return "".join((self.dir / "mlserver.log").read_text().splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The server process and its children (MLServer's inference workers)."""
        try:
            import psutil

            parent = psutil.Process(self.proc.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        except Exception:  # psutil missing, or the process already gone
            return [self.proc.pid]

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the workers go too
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
