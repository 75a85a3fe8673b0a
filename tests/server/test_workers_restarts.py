"""The --workers supervisor degrades instead of dying (issue 10, defect 5): per-worker restarts with
exponential back-off; a worker that keeps crashing is given up on while the others serve, which
the log and the supervisor's metrics show."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from ortserve.client import Client
from ortserve.ops.restarts import BACKOFF_MAX_S, STABLE_S, Restarts
from tests import onnx_models as m
from tests.flags_util import metric
from tests.server.test_workers import worker_pids

A = np.ones((1, 4), np.float32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_back_off_doubles_per_worker_and_gives_up_after_the_limit():
    clock = Clock()
    r = Restarts(2, max_restarts=3, clock=clock)
    r.started(0)
    r.started(1)
    delays = []
    for _ in range(3):
        clock.now += 1
        delays.append(r.exited(0))
        assert r.due() == []  # not yet
        clock.now += delays[-1]
        assert r.due() == [0]
        r.started(0)
    assert delays == [0.5, 1.0, 2.0]
    clock.now += 1
    assert r.exited(0) is None and r.given_up == [0]
    assert r.next_due() is None
    clock.now += 1
    assert r.exited(1) == 0.5  # the other worker has its own count
    samples = {
        (f.name, s.labels.get("worker", s.labels.get("state"))): s.value
        for f in r.collect()
        for s in f.samples
    }
    assert samples[("ortserve_worker_restarts", "0")] == 3
    assert (
        samples[("ortserve_workers", "given_up")] == 1 and samples[("ortserve_workers", "backing_off")] == 1
    )
    assert samples[("ortserve_workers", "running")] == 0


def test_a_worker_that_served_a_while_starts_a_new_count_and_the_delay_is_capped():
    clock = Clock()
    r = Restarts(1, max_restarts=100, clock=clock)
    r.started(0)
    for _ in range(10):
        clock.now += 1
        delay = r.exited(0)
        clock.now += delay
        r.due()
        r.started(0)
    assert delay == BACKOFF_MAX_S
    clock.now += STABLE_S + 1
    assert r.exited(0) == 0.5 and r.in_a_row(0) == 1


def test_a_crash_looping_worker_is_given_up_on_and_the_other_keeps_serving(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--workers", "2", "--worker-max-restarts", "2")
    first = worker_pids(server)
    assert len(first) == 2
    victims = []
    end = time.monotonic() + 120
    for kill in range(3):  # worker 0 dies 3 times in a row: restarted twice, then given up on
        pid = next(p for p in worker_pids(server) if p not in victims and p not in first[1:])
        victims.append(pid)
        os.kill(pid, signal.SIGKILL)
        if kill < 2:
            while len(server.logs("worker 0 serving")) < kill + 2:
                assert time.monotonic() < end, "worker 0 was not restarted"
                time.sleep(0.1)
    given_up = server.wait_log("giving up on it", timeout=30)
    assert given_up["worker"] == 0 and "1 of 2 workers serve" in given_up["message"]
    assert server.proc.poll() is None  # the supervisor serves on
    assert worker_pids(server) == first[1:]
    for _ in range(10):
        with Client(server.target) as c:
            np.testing.assert_array_equal(c.predict("addmul", {"a": A, "b": A})["sum"], A * 2)
    assert metric(server, "ortserve_worker_restarts_total", worker="0") == 2
    assert metric(server, "ortserve_workers", state="given_up") == 1
    assert metric(server, "ortserve_workers", state="running") == 1
    restarting = [e for e in server.lines if e.get("event") == "worker_restarting"]
    assert [e["message"].split(" in ")[-1] for e in restarting] == ["0.5s", "1.0s"]
    assert server.stop() == 1  # not every worker served to the end
