"""The status page on the metrics port: the history of rate / p99 / errors (real registries, a stepped clock),
the flags as shown, and the page on a real server (with flags, traffic, escaping, headers, --workers).
The headless-browser test is tests/server/test_status_browser.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from ortserve.client import Client
from ortserve.metrics import Metrics
from ortserve.ops.status.history import MetricsHistory, quantile
from ortserve.ops.status.render import render_page
from ortserve.ops.status.state import ModelState, ServerState, VersionState, describe_flags
from tests import onnx_models as m
from tests.flags_util import write_flags

FLAGS = {
    "flags": {
        "addmul": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "canary": "2"},
            "targeting": {"fractional": [["stable", 75], ["canary", 25]]},
        },
        "addmul.shadow": {
            "state": "ENABLED",
            "defaultVariant": "on",
            "variants": {"off": "", "on": "2"},
        },
        "<script>alert(1)</script>": {"state": "DISABLED", "defaultVariant": "a", "variants": {"a": "x"}},
    }
}
AB = {"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)}


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_quantile_interpolates_inside_the_bucket():
    assert quantile(0.5, {0.1: 0.0, 0.2: 10.0, float("inf"): 10.0}) == pytest.approx(0.15)
    assert quantile(0.99, {0.1: 99.0, 0.2: 100.0, float("inf"): 100.0}) == pytest.approx(0.1)
    assert quantile(0.99, {0.1: 0.0, 1.0: 0.0, float("inf"): 5.0}) == 1.0  # above the top bound: the bound
    assert quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None


def test_history_rate_errors_and_p99_per_variant():
    now = [1000.0]
    metrics = Metrics()
    history = MetricsHistory(metrics.registry, interval=10, window=100, clock=lambda: now[0])
    stable, canary = metrics.version("addmul", "1"), metrics.version("addmul", "2")
    history.sample()
    for _ in range(12):  # 12 steps of 10 s: more than the window (11 samples kept)
        for _ in range(20):
            stable.request("v1", "ok", 0.003, variant="stable")
        for _ in range(4):
            canary.request("v2", "ok", 0.04, variant="canary")
        canary.request("v2", "invalid_input", 0.0001, variant="canary")
        canary.request("v1", "cancelled", 0.5, variant="canary")  # the caller gave up: not an error
        now[0] += 10
        history.sample()
    series = history.series()
    assert set(series) == {("addmul", "1", "stable"), ("addmul", "2", "canary")}
    s = series[("addmul", "1", "stable")]
    assert len(s.points) == 10 and s.now - s.points[-1].t == 0.0 and s.now - s.points[0].t == 90.0
    assert s.last.rate == pytest.approx(2.0) and s.last.error_ratio == 0.0
    assert 0.0025 < s.last.p99_s <= 0.005  # within the bucket holding 3 ms
    assert s.requests == 200  # the 10 steps the window holds
    c = series[("addmul", "2", "canary")]
    assert c.last.rate == pytest.approx(0.6) and c.last.error_ratio == pytest.approx(1 / 6)
    assert 0.25 < c.last.p99_s <= 0.5  # the cancelled requests' half-second is the slowest percent
    assert history.shadow() == {}


def test_flags_as_shown():
    flags = {f.key: f for f in describe_flags(json.dumps(FLAGS))}
    split = flags["addmul"]
    assert [(s.variant, s.version, s.percent) for s in split.splits] == [
        ("stable", "1", 75.0),
        ("canary", "2", 25.0),
    ]
    assert flags["addmul.shadow"].shadow and flags["addmul.shadow"].model == "addmul"
    assert not flags["<script>alert(1)</script>"].enabled
    rules = describe_flags(
        '{"flags": {"m": {"variants": {"a": "1"}, "defaultVariant": "a", '
        '"targeting": {"if": [{"==": [{"var": "country"}, "ch"]}, "a", null]}}}}'
    )
    assert rules[0].rules.startswith('{"if":') and rules[0].splits == ()
    assert describe_flags("not json") == () and describe_flags("") == ()


def test_a_large_page_renders():
    """Not timed here (benchmarks/bench_status.py measures it): 40 models x 5 versions and 200 charted series
    of 120 points render to one page with every version and chart on it."""
    metrics = Metrics()
    now = [0.0]
    history = MetricsHistory(metrics.registry, interval=5, window=600, clock=lambda: now[0])
    stats = [metrics.version(f"model{i}", str(v)) for i in range(40) for v in range(1, 6)]
    for _ in range(121):
        for s in stats:
            s.request("v1", "ok", 0.002, variant="")
        now[0] += 5
        history.sample()
    models = tuple(
        ModelState(
            f"model{i}", "1", tuple(VersionState(str(v), True, v == 1, "ab" * 32) for v in range(1, 6))
        )
        for i in range(40)
    )
    html = render_page(ServerState("server", models), history.series(), window=600, refresh=5)
    assert html.count("<polyline") == 200 * 3 and html.count("<h3>") == 40


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    m.publish(root, "addmul", 1, m.addmul(0))
    m.publish(root, "addmul", 2, m.addmul(1))
    write_flags(root / "flags.json", FLAGS)
    return root


def wait_status(url: str, ready, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        doc = json.loads(get(url)[2])
        if ready(doc) or time.monotonic() > end:
            return doc
        time.sleep(0.1)


def test_the_page_on_a_real_server(repo, start_server):
    server = start_server(repo, "--status-interval", "0.2")
    base = f"http://127.0.0.1:{server.metrics_port}"
    with Client(server.target) as c:
        for i in range(40):
            c.predict("addmul", AB, targeting_key=f"user-{i}")
    doc = wait_status(
        base + "/status.json", lambda d: sum(t["requests_in_window"] for t in d["traffic"]) >= 40
    )
    traffic = {(t["model"], t["version"], t["variant"]): t for t in doc["traffic"]}
    assert set(traffic) == {("addmul", "1", "stable"), ("addmul", "2", "canary")}
    assert sum(t["requests_in_window"] for t in traffic.values()) == 40
    assert all(
        t["last_minute"]["error_ratio"] == 0 and t["last_minute"]["p99_s"] > 0 for t in traffic.values()
    )
    (model,) = doc["state"]["models"]
    assert model["default_version"] == "2" and [v["version"] for v in model["versions"]] == ["1", "2"]
    v1, v2 = model["versions"]
    assert v1["ready"] and len(v1["sha256"]) == 64 and v1["signed"] == "no" and not v1["card"]
    assert v2["default"] and v2["routes"] == ["addmul:canary", "addmul.shadow:on"]
    doc = wait_status(
        base + "/status.json",
        lambda d: (
            d["shadow"]
            and d["shadow"][0]["mirrored"] > 0
            and all(len(t["points"]) >= 3 for t in d["traffic"])
        ),
    )
    assert doc["shadow"][0]["primary_version"] == "1" and doc["shadow"][0]["agreement"] is not None

    status, headers, body = get(base + "/")
    html = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert (
        "script-src" not in headers["Content-Security-Policy"]
        and "default-src 'none'" in headers["Content-Security-Policy"]
    )
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "stable 75%, canary 25%" in html and "<polyline" in html and 'http-equiv="refresh"' in html
    assert get(base + "/status")[2].decode().startswith("<!doctype html>")
    status, _, body = get(base + "/metrics")
    assert status == 200 and b"ortserve_requests_total" in body
    assert get(base + "/nope")[0] == 404 and get(base + "/", "POST")[0] == 405
    assert get(base + "/favicon.ico")[0] == 204


def test_no_status_page(repo, start_server):
    server = start_server(repo, "--no-status-page")
    base = f"http://127.0.0.1:{server.metrics_port}"
    assert get(base + "/")[0] == 404 and get(base + "/metrics")[0] == 200


def test_the_supervisors_page_under_workers(repo, start_server):
    server = start_server(repo, "--workers", "2", "--status-interval", "0.2")
    base = f"http://127.0.0.1:{server.metrics_port}"
    with Client(server.target) as c:
        for i in range(10):
            c.predict("addmul", AB, targeting_key=f"user-{i}")
    doc = wait_status(
        base + "/status.json", lambda d: sum(t["requests_in_window"] for t in d["traffic"]) >= 10
    )
    assert doc["state"]["mode"] == "supervisor of 2 workers" and "supervisor" in doc["state"]["notes"][0]
    (model,) = doc["state"]["models"]
    assert [(v["version"], v["ready"], v["default"]) for v in model["versions"]] == [
        ("1", True, False),
        ("2", True, True),
    ]
    assert [f["key"] for f in doc["state"]["flags"]][:2] == ["<script>alert(1)</script>", "addmul"]
    assert sum(t["requests_in_window"] for t in doc["traffic"]) == 10
    assert "supervisor of 2 workers" in get(base + "/")[2].decode()


def test_a_guard_wraps_the_whole_port():
    """Where authentication plugs in: a WSGI middleware around every path of the metrics port."""
    from ortserve.ops.metrics_http import start_metrics_server
    from ortserve.ops.status import ServerState

    def guard(app):
        def checked(environ, start_response):
            if environ.get("HTTP_AUTHORIZATION") != "Bearer let-me-in":
                start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
                return [b"no\n"]
            return app(environ, start_response)

        return checked

    server = start_metrics_server(
        0, "127.0.0.1", Metrics().registry, state=lambda: ServerState("server"), guard=guard
    )
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert get(base + "/")[0] == 401 and get(base + "/metrics")[0] == 401
        request = urllib.request.Request(base + "/status", headers={"Authorization": "Bearer let-me-in"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200 and b"ortserve status" in r.read()
    finally:
        server.shutdown()


def test_drift_per_version_from_the_monitors_gauges():
    now = [0.0]
    metrics = Metrics()
    history = MetricsHistory(metrics.registry, interval=5, window=60, clock=lambda: now[0])
    metrics.feature_psi.labels("digits", "2", "input[3]").set(0.04)
    metrics.feature_psi.labels("digits", "2", "input[9]").set(0.31)  # the largest one is shown
    metrics.prediction_psi.labels("digits", "2", "label").set(0.12)
    history.sample()
    assert history.drift == {
        ("digits", "2"): {"ortserve_feature_drift_psi": 0.31, "ortserve_prediction_drift_psi": 0.12}
    }
    models = (ModelState("digits", "1", (VersionState("1", True, True), VersionState("2", True))),)
    html = render_page(ServerState("server", models), {}, window=60, refresh=5, drift=history.drift)
    assert 'inputs <span class="bad">0.310</span> · predictions <span class="warn">0.120</span>' in html
