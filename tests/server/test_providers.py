"""Execution providers: a model that asks for a GPU this ONNX Runtime cannot use is refused (the server
exits with status 3 when that happens at startup) unless CPU fallback is allowed, and each version
reports the providers its sessions really use. This machine has the CPU build of ONNX Runtime, so
asking for CUDAExecutionProvider is the case of a GPU image scheduled on a node without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton

from ortserve.client import Client
from ortserve.core.providers import check_sessions, resolve_providers
from ortserve.errors import ProviderUnavailable
from tests import onnx_models as m

A = np.ones((1, 4), np.float32)
CUDA_CONFIG = '[runtime]\nproviders = ["CUDAExecutionProvider", "CPUExecutionProvider"]\n'

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="these tests need an ONNX Runtime build without CUDA (the CPU package)",
)


def run_server(repo: Path, *args: str, timeout: float = 60) -> tuple[int, list[dict]]:
    """Run the server until it exits by itself; its exit status and JSON log lines."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "ortserve", "--model-repository", str(repo), "--port", "0"),
            *("--metrics-port", "-1", "--log-format", "json", *args),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = []
    for line in proc.stderr.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return proc.returncode, lines


def session(requested: tuple[str, ...]) -> ort.InferenceSession:
    return ort.InferenceSession(m.addmul().SerializeToString(), providers=resolve_providers(requested))


def test_a_gpu_provider_that_cannot_be_created_is_refused_with_the_reason():
    requested = ("CUDAExecutionProvider", "CPUExecutionProvider")
    with pytest.raises(ProviderUnavailable) as e:
        check_sessions(requested, [session(requested)], allow_cpu_fallback=False)
    message = str(e.value)
    assert message.startswith(f"asks for CUDAExecutionProvider but ONNX Runtime {ort.__version__} cannot")
    assert "CUDAExecutionProvider is not in this onnxruntime build, which has" in message
    assert "CPUExecutionProvider" in message and "onnxruntime-gpu" in message
    assert "allow_cpu_fallback = true" in message and "--allow-cpu-fallback" in message


def test_cpu_fallback_when_allowed_reports_what_the_session_really_uses(caplog):
    requested = ("CUDAExecutionProvider",)
    used = check_sessions(requested, [session(requested)] * 2, allow_cpu_fallback=True)
    assert used == ["CPUExecutionProvider"]
    assert "serving on CPUExecutionProvider although CUDAExecutionProvider was asked for" in caplog.text
    assert check_sessions(("CPUExecutionProvider",), [session(())], allow_cpu_fallback=False) == [
        "CPUExecutionProvider"
    ]


def test_startup_exits_3_naming_the_model_version_and_provider(tmp_path):
    m.publish(tmp_path, "cpu", 1, m.addmul())
    m.publish(tmp_path, "gpu", 1, m.addmul(), CUDA_CONFIG)
    m.publish(tmp_path, "gpu", 2, m.addmul())
    code, lines = run_server(tmp_path)
    assert code == 3
    (refused,) = [e for e in lines if e.get("event") == "startup_refused"]
    assert refused["level"] == "error"
    msg = refused["message"]
    assert msg.startswith(
        "refusing to start (exit status 3): model gpu version 1: asks for CUDAExecutionProvider"
    )
    assert "; model gpu version 2: asks for CUDAExecutionProvider" in msg
    assert "not in this onnxruntime build" in msg
    assert not [e for e in lines if e.get("event") == "ready"]
    versions = {(e["model"], e["version"]) for e in lines if e.get("event") == "version_refused"}
    assert versions == {("gpu", "1"), ("gpu", "2")}


def test_workers_exit_3_too(tmp_path):
    m.publish(tmp_path, "gpu", 1, m.addmul(), CUDA_CONFIG)
    code, lines = run_server(tmp_path, "--workers", "2")
    assert code == 3
    assert any(e.get("event") == "startup_refused" for e in lines)


def test_allow_cpu_fallback_serves_on_the_cpu_and_reports_it(tmp_path, start_server):
    m.publish(tmp_path, "gpu", 1, m.addmul(), CUDA_CONFIG)
    server = start_server(tmp_path, "--allow-cpu-fallback")
    warned = server.wait_log("serving on CPUExecutionProvider although CUDAExecutionProvider was asked for")
    assert warned["level"] == "warning"
    (loaded,) = [e for e in server.lines if e.get("event") == "version_loaded"]
    assert loaded["providers"] == ["CPUExecutionProvider"]
    with Client(server.target) as c:
        assert c.metadata("gpu").providers == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(c.predict("gpu", {"a": A, "b": A})["sum"], A * 2)


@pytest.mark.parametrize(
    ("model_says", "flag", "starts"),
    [
        ("allow_cpu_fallback = true\n", (), True),  # the model allows it, the server does not
        ("allow_cpu_fallback = false\n", ("--allow-cpu-fallback",), False),  # the model's own word wins
        ("", ("--no-allow-cpu-fallback",), False),
    ],
)
def test_the_model_config_overrides_the_server_setting(tmp_path, start_server, model_says, flag, starts):
    m.publish(tmp_path, "gpu", 1, m.addmul(), CUDA_CONFIG + model_says)
    if not starts:
        assert run_server(tmp_path, *flag)[0] == 3
        return
    server = start_server(tmp_path, *flag)
    with Client(server.target) as c:
        assert c.metadata("gpu").providers == ["CPUExecutionProvider"]
    assert server.stop() == 0


def test_a_gpu_version_added_while_serving_is_refused_and_the_others_keep_serving(tmp_path, start_server):
    m.publish(tmp_path, "cpu", 1, m.addmul())
    server = start_server(tmp_path, "--poll-interval", "0.1")
    m.publish(tmp_path, "gpu", 1, m.addmul(), CUDA_CONFIG)
    refused = server.wait_log("model gpu version 1: refused, other versions keep serving")
    assert "asks for CUDAExecutionProvider" in refused["message"]
    time.sleep(0.3)  # a few more scans: refused once, not retried while unchanged
    assert len(server.logs("model gpu version 1: refused")) == 1
    assert server.proc.poll() is None
    with Client(server.target) as c:
        np.testing.assert_array_equal(c.predict("cpu", {"a": A, "b": A})["sum"], A * 2)
    with triton.InferenceServerClient(server.target) as t:
        index = {(x.name, x.version): x for x in t.get_model_repository_index().models}
    assert index[("gpu", "1")].state == "UNAVAILABLE"
    assert index[("gpu", "1")].reason.startswith("refused at load: asks for CUDAExecutionProvider")
