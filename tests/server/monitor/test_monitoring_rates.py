"""A model's ``[monitoring]`` table on a real server: its own payload log rate over the server's (1: every
request written, 0: none, its feedback neither), a change picked up by the repository poll without
reloading the model, a bad value refused while the previous rate keeps applying; its own drift sample
rate. Rates 0 and 1 only: which records exist is then exact."""

from __future__ import annotations

import shutil
import time
import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

import tests.onnx_models as m
from ortserve.client import Client
from ortserve.repository.payload import FEEDBACK_TYPE, INFERENCE_TYPE, read_payload_log
from ortserve.testing import ServerProcess
from tests.server.monitor.conftest import train_split

A = np.arange(8, dtype=np.float32).reshape(2, 4)


def send(c: Client, model: str, prefix: str, n: int = 5) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    for i, rid in enumerate(ids):
        c.predict(model, {"a": A + i, "b": A}, request_id=rid)
    return ids


def logged(log_dir, model: str, kind: str = INFERENCE_TYPE) -> list[str]:
    return [r.id for r in read_payload_log(log_dir, model) if r.type == kind]


def test_each_model_is_logged_at_its_own_rate(tmp_path):
    m.publish(tmp_path / "repo", "fraud", 1, m.addmul(), "[monitoring]\npayload_log_rate = 1.0\n")
    m.publish(tmp_path / "repo", "busy", 1, m.addmul())  # no [monitoring]: the server's rate, 0
    log_dir = tmp_path / "payloads"
    s = ServerProcess(tmp_path / "repo", "--payload-log", str(log_dir), "--payload-log-rate", "0")
    try:
        with Client(s.target) as c:
            fraud = send(c, "fraud", "f")
            send(c, "busy", "b")
            fraud += send(c, "fraud", "g")
    finally:
        assert s.stop() == 0  # the writer is drained at shutdown
    records = list(read_payload_log(log_dir, "fraud"))
    assert [r.id for r in records] == fraud
    for r in records:
        i = int(r.id[2:])
        np.testing.assert_array_equal(r.inputs["a"], A + i)
        np.testing.assert_array_equal(r.outputs["sum"], A + i + A)
    assert not (log_dir / "busy").exists() and logged(log_dir, "busy") == []


def test_a_model_at_rate_0_is_never_logged_nor_its_feedback(tmp_path):
    m.publish(tmp_path / "repo", "private", 1, m.classifier(), "[monitoring]\npayload_log_rate = 0\n")
    m.publish(tmp_path / "repo", "open", 1, m.classifier())
    log_dir = tmp_path / "payloads"
    s = ServerProcess(tmp_path / "repo", "--payload-log", str(log_dir), "--payload-log-rate", "1")
    x = np.eye(4, dtype=np.float32)
    try:
        with Client(s.target) as c:
            for model in ("private", "open"):
                for i in range(4):
                    r = c.predict(model, {"x": x[i : i + 1]}, request_id=f"{model}-{i}")
                    assert c.feedback(r.request_id, labels=[i]).status == "correct"
    finally:
        assert s.stop() == 0
    assert not (log_dir / "private").exists()
    assert logged(log_dir, "open") == [f"open-{i}" for i in range(4)]
    feedback = [r.feedback for r in read_payload_log(log_dir, "open") if r.type == FEEDBACK_TYPE]
    assert [(f["request_id"], f["status"]) for f in feedback] == [(f"open-{i}", "correct") for i in range(4)]


def test_a_config_change_sets_the_rate_while_serving_and_a_bad_one_is_refused(tmp_path):
    repo = tmp_path / "repo"
    m.publish(repo, "m", 1, m.addmul())
    config = repo / "m" / "config.toml"
    log_dir = tmp_path / "payloads"
    s = ServerProcess(
        repo, "--payload-log", str(log_dir), "--payload-log-rate", "0", "--poll-interval", "0.1"
    )
    try:
        with Client(s.target) as c:
            send(c, "m", "a")  # the server's rate: none
            config.write_text("[monitoring]\npayload_log_rate = 1.0\n")
            s.wait_log("[monitoring] payload_log_rate=1.0 drift_sample_rate=server (was", timeout=30)
            expected = send(c, "m", "b")
            config.write_text("[monitoring]\npayload_log_rate = 0\n")
            s.wait_log("[monitoring] payload_log_rate=0.0 drift_sample_rate=server (was", timeout=30)
            send(c, "m", "c")
            for bad, got in (("1.5", "1.5"), ('"x"', "'x'")):
                config.write_text(f"[monitoring]\npayload_log_rate = {bad}\n")
                line = s.wait_log(f"expected a number from 0 to 1, got {got}", timeout=30)
                assert "config refused" in line["message"]
                assert f"{config} [monitoring] payload_log_rate:" in line["message"]
                send(c, "m", f"d{bad[-1]}")  # the previous rate, 0, still applies
            config.write_text("[monitoring]\npayload_log_rate = 1\n")  # fixed: taken again
            end = time.monotonic() + 30
            while len(s.logs("[monitoring] payload_log_rate=1.0")) < 2:
                assert time.monotonic() < end, "the fixed config was not taken"
                time.sleep(0.05)
            expected += send(c, "m", "e")
    finally:
        assert s.stop() == 0
    assert logged(log_dir, "m") == expected
    assert s.logs("reloading its versions") == [] and len(s.logs("version 1: loaded")) == 1


def window_rows(s: ServerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(s.metrics_url, timeout=5).read().decode()
    return {
        sample.labels["model"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ortserve_drift_window_rows"
    }


def wait_rows(s: ServerProcess, model: str, rows: int) -> dict[str, float]:
    end = time.monotonic() + 30
    while (found := window_rows(s)).get(model) != rows:
        assert time.monotonic() < end, (
            f"{model}: {found.get(model)} rows in its drift window, expected {rows}"
        )
        time.sleep(0.1)
    return found


def test_each_model_samples_drift_at_its_own_rate(tmp_path, demo_version):
    repo = tmp_path / "repo"
    for name in ("watched", "quiet"):
        shutil.copytree(demo_version, repo / name / "1")
    (repo / "quiet" / "config.toml").write_text("[monitoring]\ndrift_sample_rate = 0\n")
    args = ("--drift-sample-rate", "1", "--drift-interval", "0.2", "--poll-interval", "0.1")
    s = ServerProcess(repo, *args)
    x, _ = train_split()
    try:
        with Client(s.target) as c:

            def send_rows(model: str) -> None:
                for i in range(0, 40, 4):
                    c.predict(model, {"input": x[i : i + 4]})

            send_rows("quiet")  # answered first: sampled, were it sampled, no later than watched's rows
            send_rows("watched")
            assert "quiet" not in wait_rows(s, "watched", 40)  # no window: nothing read, nothing exported
            assert s.logs("model quiet version 1: drift against") == []
            (repo / "quiet" / "config.toml").write_text("[monitoring]\ndrift_sample_rate = 1.0\n")
            (repo / "watched" / "config.toml").write_text("[monitoring]\ndrift_sample_rate = 0.0\n")
            s.wait_log("model quiet: [monitoring] payload_log_rate=server drift_sample_rate=1.0", timeout=30)
            s.wait_log(
                "model watched: [monitoring] payload_log_rate=server drift_sample_rate=0.0", timeout=30
            )
            send_rows("watched")
            send_rows("quiet")
            assert "watched" not in wait_rows(s, "quiet", 40)  # its rate is 0 now: its window and series went
    finally:
        assert s.stop() == 0
    assert s.logs("reloading its versions") == []
