"""The status page's "Admission and reliability" section: the admission bounds and what is held against them,
refusals, failed flag evaluations, versions whose files changed, workers by state, and the drain (real
registries, and a real server refusing a request and draining)."""

from __future__ import annotations

import signal

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from ortserve.client import Client
from ortserve.metrics import Metrics
from ortserve.ops.restarts import Restarts
from ortserve.ops.status.history import MetricsHistory
from ortserve.ops.status.render import render_page
from ortserve.ops.status.state import Admission, ServerState
from tests import onnx_models as m
from tests.server.test_status_page import get, wait_status

AB = {"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)}


def test_levels_now_and_over_the_last_minute():
    now = [0.0]
    metrics = Metrics()
    history = MetricsHistory(metrics.registry, interval=10, window=120, clock=lambda: now[0])
    refused = metrics.admission_rejected.labels("bytes")
    refused.inc(5)  # before the first sample: since start, not in the last minute once a minute has passed
    history.sample()
    for _ in range(7):  # 70 s: the sample a minute ago is the base
        now[0] += 10
        history.sample()
    refused.inc(3)
    metrics.model_files_changed.labels("digits", "2").inc()
    metrics.inflight_bytes.set(3 << 20)
    now[0] += 10
    history.sample()
    levels, minute = history.levels()
    assert levels[("ortserve_admission_rejected", "bytes")] == 8
    assert minute[("ortserve_admission_rejected", "bytes")] == 3
    assert levels[("ortserve_inflight_request_bytes", "")] == 3 << 20
    assert levels[("ortserve_model_files_changed", "digits v2")] == 1

    admission = Admission(inflight_bytes=4 << 20, rpcs=64, rpcs_in_flight=2, draining=True)
    html = render_page(
        ServerState("server", admission=admission), {}, window=120, refresh=5, levels=history.levels()
    )
    assert '<span class="bad">3 MiB</span> of 4 MiB (75%)' not in html  # 75%: amber, not red
    assert '<span class="warn">3 MiB</span> of 4 MiB (75%)' in html
    assert '<span class="">2</span> of 64 (3.12%)' in html
    row = html[html.index("over the bytes bound") :]
    assert row.index('<span class="warn">3</span>') < row.index(">8</span>") < row.index("</tr>")
    assert '<span class="warn">digits v2</span>' in html
    assert "Draining: health says NOT_SERVING" in html
    assert "workers (restarted" not in html  # a server, not the supervisor


def test_workers_given_up_are_shown_first():
    registry = CollectorRegistry()
    restarts = Restarts(2, max_restarts=0)
    registry.register(restarts)
    restarts.started(0)
    restarts.started(1)
    assert restarts.exited(1) is None  # no restart allowed: given up at once
    history = MetricsHistory(registry, restrict=False)
    history.sample()
    html = render_page(
        ServerState("supervisor of 2 workers"), {}, window=60, refresh=5, levels=history.levels()
    )
    assert "1 worker(s) given up on after --worker-max-restarts" in html
    assert (
        'running 1</span> · <span class="">backing off 0</span> · <span class="bad">given up 1</span>' in html
    )


def test_a_real_server_shows_its_refusals_bounds_and_drain(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(
        tmp_path,
        "--max-inflight-bytes", "16",  # one request's inputs hold 32 bytes
        "--max-concurrent-rpcs", "7",
        "--status-interval", "0.2",
        "--drain-delay", "8",
        "--grace-period", "30",
    )  # fmt: skip
    base = f"http://127.0.0.1:{server.metrics_port}"
    with Client(server.target) as c, pytest.raises(grpc.RpcError) as refused:
        c.predict("addmul", AB)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    doc = wait_status(  # the refusal sampled, and a snapshot of the loaded server (not the starting one)
        base + "/status.json",
        lambda d: (
            d["reliability"]["now"].get("ortserve_admission_rejected{bytes}")
            and d["state"] is not None
            and d["state"]["admission"]["rpcs"] == 7
        ),
    )
    assert doc["reliability"]["now"]["ortserve_admission_rejected{bytes}"] == 1
    assert doc["reliability"]["last_minute"]["ortserve_admission_rejected{bytes}"] == 1
    assert doc["state"]["admission"] == {
        "inflight_bytes": 16,
        "rpcs": 7,
        "rpcs_in_flight": 0,
        "draining": False,
    }
    html = get(base + "/")[2].decode()
    assert "Admission and reliability" in html and "of 7 (0%)" in html and "Draining" not in html

    server.proc.send_signal(signal.SIGTERM)  # --drain-delay: it serves on, and the page says it drains
    doc = wait_status(base + "/status.json", lambda d: d["state"]["admission"]["draining"], timeout=6)
    assert doc["state"]["admission"]["draining"]
    assert "Draining: health says NOT_SERVING" in get(base + "/")[2].decode()


def test_the_supervisor_shows_its_workers_and_summed_bounds(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path, "--workers", "2", "--max-inflight-bytes", str(1 << 20))
    base = f"http://127.0.0.1:{server.metrics_port}"
    doc = (
        wait_status(  # a sample and a state snapshot both taken (the page's thread takes one after the other)
            base + "/status.json",
            lambda d: (
                d["state"] is not None and d["reliability"]["now"].get("ortserve_workers{running}") == 2
            ),
        )
    )
    assert doc["reliability"]["now"]["ortserve_workers{given_up}"] == 0
    assert doc["reliability"]["now"]["ortserve_worker_restarts"] == 0
    assert doc["state"]["admission"]["inflight_bytes"] == 2 << 20  # the two workers' bounds
    assert doc["state"]["admission"]["rpcs_in_flight"] is None  # not known to the supervisor
    assert "workers (restarted by the supervisor)" in get(base + "/")[2].decode()
