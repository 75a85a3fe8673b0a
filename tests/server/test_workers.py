"""``--workers N``: several processes on one port, metrics summed, graceful stop, restarts."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import Client
from tests import onnx_models as m

A = np.ones((1, 4), np.float32)


def requests_ok(server) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "ortserve_requests_total" and s.labels.get("outcome") == "ok"
    )


def worker_pids(server) -> list[int]:
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return [int(p) for p in children]


def test_two_workers_share_the_port_and_sum_their_metrics(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--workers", "2")
    assert len(worker_pids(server)) == 2
    n = 60
    for _ in range(n):  # a new connection each time, so the kernel spreads them over the workers
        with Client(server.target) as c:
            np.testing.assert_array_equal(c.predict("addmul", {"a": A, "b": A})["sum"], A * 2)
    assert requests_ok(server) == n
    # repository control would reach one worker only: refused, with the way to do it instead
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(server.target)
    with pytest.raises(InferenceServerException) as e:
        client.unload_model("addmul")
    assert e.value.status() == "StatusCode.FAILED_PRECONDITION" and "--workers 2" in e.value.message()
    client.close()
    assert server.stop() == 0


def test_a_dead_worker_is_restarted(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--workers", "2")
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    server.wait_log("restarting it")
    end = time.monotonic() + 60
    while len([p for p in worker_pids(server) if p != victim]) < 2:
        assert time.monotonic() < end, "worker was not restarted"
        time.sleep(0.2)
    while len(server.logs("worker 0 serving")) < 2:
        assert time.monotonic() < end, "restarted worker never became ready"
        time.sleep(0.1)
    with Client(server.target) as c:
        np.testing.assert_array_equal(c.predict("addmul", {"a": A, "b": A})["sum"], A * 2)
    assert server.stop() == 0
