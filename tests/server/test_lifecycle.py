"""Start-up, settings, metrics, graceful shutdown, generated code."""

from __future__ import annotations

import asyncio
import filecmp
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import AsyncClient, Client
from ortserve.ops.settings import Settings, SettingsError, load_settings
from tests import onnx_models as m

ROOT = Path(__file__).resolve().parents[2]
A = np.ones((1, 4), np.float32)


def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0(tmp_path, start_server):
    m.publish(
        tmp_path, "slow", 1, m.addmul(), "max_batch_size = 8\n[batching]\nmax_queue_delay_us = 1000000\n"
    )
    server = start_server(tmp_path, "--grace-period", "10")

    async def main():
        async with AsyncClient(server.target) as c:
            rows = [np.full((1, 4), i, np.float32) for i in range(3)]
            in_flight = [asyncio.ensure_future(c.predict("slow", {"a": r, "b": r}, timeout=20)) for r in rows]
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            server.wait_log("shutting down")
            async with AsyncClient(server.target) as fresh:
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await fresh.predict("slow", {"a": A, "b": A}, timeout=5)
                assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            results = await asyncio.gather(*in_flight)
            for r, res in zip(rows, results):
                np.testing.assert_array_equal(res["sum"], r * 2)

    asyncio.run(main())
    assert server.proc.wait(30) == 0
    server.wait_log("stopped")


def test_metrics_count_the_requests_made(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path)
    with Client(server.target) as c:
        for _ in range(7):
            c.predict("addmul", {"a": A, "b": A})
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                c.predict("addmul", {"a": A})
        with pytest.raises(grpc.RpcError):
            c.predict("missing-model", {"a": A})
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    ok = dict(model="addmul", version="1", variant="", api="v1")
    assert get("ortserve_requests_total", outcome="ok", **ok) == 7
    assert get("ortserve_requests_total", outcome="invalid_input", **ok) == 3
    assert (
        get(
            "ortserve_requests_total", model="_unknown", version="", variant="", api="v1", outcome="not_found"
        )
        == 1
    )
    assert get("ortserve_request_duration_seconds_count", **ok) == 10
    assert get("ortserve_queue_duration_seconds_count", model="addmul", version="1") == 7
    assert get("ortserve_compute_duration_seconds_count", model="addmul", version="1") == 7
    assert get("ortserve_batch_size_sum", model="addmul", version="1") == 7
    assert get("ortserve_model_ready", model="addmul", version="1") == 1
    assert get("ortserve_queue_depth", model="addmul", version="1") == 0


def test_settings_precedence_flags_env_file(tmp_path):
    config = tmp_path / "ortserve.toml"
    config.write_text('port = 9100\nlog_format = "json"\ngrace_period = 3\n')
    s = load_settings(["--config", str(config)], environ={})
    assert (s.port, s.log_format, s.grace_period) == (9100, "json", 3.0)
    s = load_settings(["--config", str(config)], environ={"ORTSERVE_PORT": "9200"})
    assert s.port == 9200 and s.log_format == "json"
    s = load_settings(["--config", str(config), "--port", "9300"], environ={"ORTSERVE_PORT": "9200"})
    assert s.port == 9300
    assert load_settings([], environ={"ORTSERVE_REQUIRE_MANIFEST": "true"}).require_manifest is True
    assert load_settings([], environ={}) == Settings()


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["--port", "70000"], {}, "--port: expected an integer from 0 to 65535, got 70000"),
        ([], {"ORTSERVE_PORT": "eighty"}, "ORTSERVE_PORT: expected an integer from 0 to 65535, got 'eighty'"),
        ([], {"ORTSERVE_GRACE_PERIOD": "-1"}, "ORTSERVE_GRACE_PERIOD: expected a number >= 0, got '-1'"),
        ([], {"ORTSERVE_ACCESS_LOG": "maybe"}, "ORTSERVE_ACCESS_LOG: expected true or false, got 'maybe'"),
        (
            [],
            {"ORTSERVE_LOG_FORMAT": "xml"},
            "ORTSERVE_LOG_FORMAT: expected one of 'text', 'json', got 'xml'",
        ),
        (["--config", "FILE"], {}, "config file FILE: workers: expected an integer from 1 to 256, got 0"),
    ],
)
def test_bad_settings_are_refused(tmp_path, argv, environ, message):
    config = tmp_path / "ortserve.toml"
    config.write_text("workers = 0\n")
    argv = [str(config) if a == "FILE" else a for a in argv]
    with pytest.raises(SettingsError) as e:
        load_settings(argv, environ=environ)
    assert str(e.value) == message.replace("FILE", str(config))


def test_cli_help_documents_every_option_and_bad_values_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ortserve", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0
    for name in Settings.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in out.stdout
    config = tmp_path / "bad.toml"
    config.write_text("colour = 'blue'\n")
    bad = subprocess.run(
        [sys.executable, "-m", "ortserve", "--config", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown setting 'colour'" in bad.stderr
    config.write_text("[server]\nmax-mesage-size = 1\n")  # a [server] table; keys with hyphens
    bad = subprocess.run(
        [sys.executable, "-m", "ortserve", "--config", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.strip().endswith(
        "unknown setting 'max_mesage_size'; did you mean 'max_message_size'?"
    )


def test_port_in_use_is_a_clear_error(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    first = start_server(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ortserve",
            "--model-repository",
            str(tmp_path),
            "--port",
            str(first.port),
            "--metrics-port",
            "-1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and f"cannot bind gRPC server to 127.0.0.1:{first.port}" in out.stderr


def test_text_logs_one_line_per_event_with_request_ids(tmp_path):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ortserve",
            "--model-repository",
            str(tmp_path),
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--log-level",
            "debug",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        port = None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "serving gRPC on" in line:
                port = int(line.split("serving gRPC on 127.0.0.1:")[1].split(",")[0])
                break
        assert port
        with Client(f"127.0.0.1:{port}") as c, pytest.raises(grpc.RpcError):
            c.predict("addmul", {"a": A}, request_id="req-42")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    lines += rest.splitlines(keepends=True)
    failed = [ln for ln in lines if "req-42" in ln]
    assert failed and "invalid_input" in failed[0] and "request_id=req-42" in failed[0]
    assert all(" INFO " in ln or " DEBUG " in ln or " WARNING " in ln for ln in lines if ln.strip())


def test_generated_stubs_are_up_to_date(tmp_path):
    pytest.importorskip("grpc_tools")
    out = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    proto_dir = ROOT / "server" / "_proto"
    committed = sorted(
        p.relative_to(proto_dir) for p in proto_dir.rglob("*.py*") if "__pycache__" not in p.parts
    )
    assert generated == committed
    stale = [
        str(p)
        for p in generated
        if not filecmp.cmp(tmp_path / p, ROOT / "server" / "_proto" / p, shallow=False)
    ]
    assert stale == [], f"run `make protos`: stale generated files {stale}"


def test_message_size_limit(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--max-message-size", "4096")
    big = np.ones((300, 4), np.float32)  # 2 x 4800 bytes of tensor data
    with Client(server.target) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.predict("addmul", {"a": big, "b": big})
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        np.testing.assert_array_equal(c.predict("addmul", {"a": A, "b": A})["sum"], A * 2)


def test_access_log_has_one_json_line_per_request_with_its_id(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--access-log")
    with Client(server.target) as c:
        c.predict("addmul", {"a": A, "b": A}, request_id="req-ok")
        with pytest.raises(grpc.RpcError):
            c.predict("addmul", {"a": A}, request_id="req-bad")
        c.predict("addmul", {"a": A, "b": A}, metadata=[("x-request-id", "req-md")])
    end = time.monotonic() + 5
    while len([e for e in server.lines if e.get("logger") == "ortserve.access"]) < 3:
        assert time.monotonic() < end
        time.sleep(0.05)
    access = {e["request_id"]: e for e in server.lines if e.get("logger") == "ortserve.access"}
    assert access["req-ok"]["outcome"] == "ok" and access["req-ok"]["version"] == "1"
    assert access["req-ok"]["duration_ms"] > 0 and access["req-ok"]["api"] == "v1"
    assert (
        access["req-bad"]["outcome"] == "invalid_input"
        and "missing input 'b'" in access["req-bad"]["message"]
    )
    assert access["req-md"]["outcome"] == "ok"


def test_unknown_models_add_no_readiness_or_queue_series(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path)
    with Client(server.target) as c:
        for name, version in (("nope", ""), ("addmul", "9")):
            with pytest.raises(grpc.RpcError):
                c.predict(name, {"a": A, "b": A}, version=version)
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    series = [
        (s.name, s.labels)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.labels.get("version", "x") == ""
    ]
    assert {name for name, _ in series} == {
        "ortserve_requests_total",
        "ortserve_requests_created",
        "ortserve_request_duration_seconds_bucket",
        "ortserve_request_duration_seconds_count",
        "ortserve_request_duration_seconds_sum",
        "ortserve_request_duration_seconds_created",
    }


def test_startup_objects_are_frozen_out_of_the_garbage_collector(tmp_path):
    """A full collection walking what startup made stalled the loop 200-500 ms under load
    (benchmarks.bench_loop_lag): the app freezes it once the models are loaded."""
    import gc

    from ortserve.ops.settings import Settings
    from tests.server.inprocess import run_in_app

    m.publish(tmp_path, "addmul", 1, m.addmul())
    gc.unfreeze()

    async def body(app, target):
        assert gc.get_freeze_count() > 1000

    try:
        run_in_app(Settings(model_repository=tmp_path, port=0, metrics_port=-1), body)
    finally:
        gc.unfreeze()
