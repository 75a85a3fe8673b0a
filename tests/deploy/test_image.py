"""The images, built and run here (slow: `make image` runs this file; the first run bootstraps a Debian base
and downloads the locked wheels, minutes). No registry is reachable, so `make image-build` builds
Dockerfile.cpu with buildah on a Debian bookworm base bootstrapped by debootstrap; the images then run
under podman (runc) the way a kubelet runs them: the image's own entrypoint and user, a read-only root
filesystem, every capability dropped, no privilege escalation, the model repository as a read-only
volume. The GPU image is built too; with no GPU here it is checked to refuse a model that asks for CUDA
(its onnxruntime-gpu has the CUDA provider, which cannot be created without a GPU) unless CPU fallback
is allowed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import Client
from tests import onnx_models as m

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
A = np.ones((1, 4), np.float32)
CUDA_CONFIG = '[runtime]\nproviders = ["CUDAExecutionProvider", "CPUExecutionProvider"]\n'
# The storage `make image-build` writes (Makefile: BUILDAH). runc with cgroupfs, and limits below the
# machine's hard ones: this sandbox has hybrid cgroups (which crun refuses) and lower rlimits than
# podman's defaults. The network is the host's, so the test reaches the server on loopback.
PODMAN = [
    *("podman", "--root", str(ROOT / "build/containers/storage")),
    *("--runroot", str(ROOT / "build/containers/run")),
    *("--storage-driver", os.environ.get("STORAGE_DRIVER", "overlay")),
    *("--cgroup-manager", "cgroupfs", "--runtime", "runc"),
]
CONFINED = [
    *("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"),
    *("--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096", "--network", "host"),
]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, check=check, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repository(*models: tuple[str, str | None]) -> Path:
    """A repository the container's user (10001) can read: not under pytest's private tmp folder."""
    repo = Path(tempfile.mkdtemp(prefix="ortserve-image-test-"))
    for name, config in models:
        m.publish(repo, name, 1, m.addmul(), config)
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repo


class Container:
    """``podman run -d`` of an image with its own entrypoint; the server on free loopback ports."""

    def __init__(self, image: str, repo: Path | None, *args: str) -> None:
        self.port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        volume = ["--volume", f"{repo}:/models:ro"] if repo is not None else []
        # The host's network: loopback addresses and free ports instead of the image's 0.0.0.0:8001-8003.
        server = ["--host", "127.0.0.1", "--port", str(self.port), "--metrics-host", "127.0.0.1"]
        server += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        self.id = podman("run", "--detach", *CONFINED, *volume, image, *server, *args).stdout.strip()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def logs(self) -> list[dict]:
        out = podman("logs", self.id)
        return [json.loads(line) for line in (out.stderr + out.stdout).splitlines() if line.startswith("{")]

    def state(self) -> dict:
        return json.loads(podman("inspect", self.id).stdout)[0]["State"]

    def wait_ready(self, timeout: float = 90) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(e.get("event") == "ready" for e in self.logs()):
                return
            assert self.state()["Running"], f"the container exited: {self.logs()}"
            time.sleep(0.5)
        raise AssertionError(f"not ready in {timeout}s: {self.logs()}")

    def wait_exit(self, timeout: float = 90) -> int:
        return int(podman("wait", self.id, timeout=timeout).stdout.strip())

    def stop(self) -> int:
        podman("stop", "--time", "30", self.id, timeout=60)
        return self.wait_exit()

    def remove(self) -> None:
        podman("rm", "--force", self.id, check=False)


@pytest.fixture(scope="module")
def cpu_images():
    subprocess.run(["make", "image-build"], cwd=ROOT, check=True, timeout=3600)
    return "localhost/ortserve:cpu", "localhost/ortserve:cpu-demo"


@pytest.fixture
def containers():
    started: list[Container] = []

    def start(image: str, repo: Path | None, *args: str) -> Container:
        started.append(Container(image, repo, *args))
        return started[-1]

    yield start
    for c in started:
        c.remove()


def test_cpu_image_config(cpu_images):
    (info,) = json.loads(podman("image", "inspect", cpu_images[0]).stdout)
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["ortserve"]
    assert set(config["ExposedPorts"]) == {"8001/tcp", "8002/tcp", "8003/tcp"}
    assert "/models" in config["Volumes"]
    assert "Healthcheck" not in config
    # Only the server and its locked dependencies (tracing included): no pip, no demo extra, no build tools.
    names = ("pip", "sklearn", "setuptools", "ortserve", "opentelemetry.sdk", "onnxruntime")
    probe = f"import importlib.util as u; print([n for n in {names} if u.find_spec(n)])"
    out = podman("run", "--rm", *CONFINED, "--entrypoint", "python3", cpu_images[0], "-c", probe).stdout
    assert out.strip() == "['ortserve', 'opentelemetry.sdk', 'onnxruntime']"


def test_cpu_image_serves_a_read_only_repository_confined_and_stops_cleanly(cpu_images, containers):
    repo = repository(("addmul", None))
    c = containers(cpu_images[0], repo)
    c.wait_ready()
    with Client(c.target) as client:
        np.testing.assert_array_equal(client.predict("addmul", {"a": A, "b": A})["sum"], A * 2)
    with grpc.insecure_channel(f"127.0.0.1:{c.health_port}") as channel:  # what the kubelet probes
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    uid = podman("exec", c.id, "python3", "-c", "import os; print(os.getuid(), os.getgid())").stdout
    assert uid.split() == ["10001", "10001"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/metrics", timeout=10).read().decode()
    ok = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "ortserve_requests_total"
        and s.labels["model"] == "addmul"
        and s.labels["outcome"] == "ok"
    ]
    assert ok == [1.0]
    assert c.stop() == 0  # SIGTERM: drained and exited 0
    assert any(e.get("event") == "stopped" for e in c.logs())


def test_cpu_image_refuses_to_listen_on_every_interface_without_tls_and_auth(cpu_images):
    # The image's own settings (0.0.0.0) and nothing else: the server's secure default stops it before
    # it binds anything.
    proc = podman("run", "--rm", *CONFINED, cpu_images[0], check=False)
    assert proc.returncode == 2
    assert (
        "refusing to serve gRPC on 0.0.0.0:8001 without TLS (--tls-cert, --tls-key) and an --auth-file"
        in proc.stderr
    )


def test_demo_target_serves_the_demo_repository(cpu_images, containers):
    c = containers(cpu_images[1], None)
    c.wait_ready()
    with Client(c.target) as client:
        result = client.predict("digits", {"input": np.zeros((2, 64), np.float32)})
        assert result["probabilities"].shape == (2, 10)
        assert client.metadata("digits").providers == ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def gpu_image():
    subprocess.run(["make", "image-gpu"], cwd=ROOT, check=True, timeout=3600)
    return "localhost/ortserve:gpu"


GPU_PROBE = """
import onnxruntime as o, os
o.preload_dlls(directory="")  # what the server does before a CUDA session
maps = {os.path.basename(p) for p in open("/proc/self/maps").read().split() if "/nvidia/" in p}
print(o.__version__, sorted(m.split(".so")[0] for m in maps), o.get_available_providers())
"""


def test_gpu_image_has_the_cuda_provider_and_its_libraries(gpu_image):
    out = podman("run", "--rm", *CONFINED, "--entrypoint", "python3", gpu_image, "-c", GPU_PROBE).stdout
    version, rest = out.split(" ", 1)
    assert version.startswith("1.26.")  # CUDA 12 (server-gpu.lock)
    assert "CUDAExecutionProvider" in rest
    # CUDA's runtime, cuBLAS and cuDNN load from the pip packages: no CUDA in the base image.
    for lib in ("libcudart", "libcublas", "libcublasLt", "libcudnn", "libcufft", "libcurand"):
        assert f"'{lib}'" in rest


def test_gpu_image_without_a_gpu_refuses_a_cuda_model_and_exits_3(gpu_image, containers):
    repo = repository(("cpu", None), ("gpu", CUDA_CONFIG))
    c = containers(gpu_image, repo)
    assert c.wait_exit() == 3
    (refused,) = [e for e in c.logs() if e.get("event") == "startup_refused"]
    assert "model gpu version 1: asks for CUDAExecutionProvider" in refused["message"]
    assert "is in the build but could not be created" in refused["message"]


def test_gpu_image_without_a_gpu_serves_on_the_cpu_when_fallback_is_allowed(gpu_image, containers):
    repo = repository(("gpu", CUDA_CONFIG))
    c = containers(gpu_image, repo, "--allow-cpu-fallback")
    c.wait_ready()
    with Client(c.target) as client:
        assert client.metadata("gpu").providers == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(client.predict("gpu", {"a": A, "b": A})["sum"], A * 2)
    assert c.stop() == 0
