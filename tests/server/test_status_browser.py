"""The status page in a real headless browser (Debian's chromium over the DevTools protocol, tests/browser.py):
it loads with no console error, warning or failed load, draws its charts, runs no script, refreshes itself,
and a screenshot is taken into the test's temp folder (``status.png``). Skipped, saying why, without chromium
(``make browser`` installs it)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from ortserve.client import Client
from tests import onnx_models as m
from tests.browser import Chromium, chromium_or_skip
from tests.flags_util import write_flags

FLAGS = {
    "flags": {
        "addmul": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "canary": "2"},
            "targeting": {"fractional": [["stable", 90], ["canary", 10]]},
        },
        "addmul.shadow": {
            "state": "ENABLED",
            "defaultVariant": "off",
            "variants": {"off": "", "int8": "3"},
            "targeting": {"fractional": [["off", 50], ["int8", 50]]},
        },
    }
}


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "models"
    for version in (1, 2, 3):
        m.publish(
            root,
            "addmul",
            version,
            m.addmul(version - 1),
            'default_version = "1"\n' if version == 1 else None,
        )
    m.publish(root, "pair", 1, m.pair())
    write_flags(root / "flags.json", FLAGS)
    return root


def traffic(target: str, stop: threading.Event) -> None:
    """Requests of every kind until stopped: routed by the flags (sticky keys), and some invalid ones."""
    rng = np.random.default_rng(0)
    ab = {"a": np.ones((2, 4), np.float32), "b": np.ones((2, 4), np.float32)}
    with Client(target) as c:
        i = 0
        while not stop.is_set():
            try:
                c.predict("addmul", ab, targeting_key=f"user-{i % 97}")
                c.predict("pair", {"x": np.ones((1, 3), np.float32), "y": np.ones((1, 3), np.float32)})
                if rng.random() < 0.1:
                    c.predict("addmul", {"a": ab["a"]})  # missing input: INVALID_ARGUMENT
            except Exception:
                pass
            i += 1
            time.sleep(0.005)


def test_status_page_in_headless_chromium(tmp_path, repo, start_server):
    chromium_or_skip()
    server = start_server(repo, "--status-interval", "0.5")
    url = f"http://127.0.0.1:{server.metrics_port}"
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(server.target, stop), daemon=True)
    sender.start()
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:  # until the history has a few points for every variant
            doc = json.loads(urllib.request.urlopen(url + "/status.json", timeout=10).read())
            if len(doc["traffic"]) >= 3 and all(len(t["points"]) >= 4 for t in doc["traffic"]):
                break
            time.sleep(0.5)
        with Chromium(tmp_path / "profile") as browser:
            page = browser.open(url + "/")
            shot = page.screenshot(tmp_path / "status.png")
            assert page.problems == [], page.problems
            assert page.evaluate("document.title") == "ortserve status"
            assert page.evaluate("document.scripts.length") == 0
            assert page.evaluate("document.querySelectorAll('svg polyline').length") >= 3
            text = page.evaluate("document.body.innerText")
            for expected in (
                "addmul",
                "pair",
                "canary",
                "stable 90%, canary 10%",
                "off 50%, int8 50%",
                "Shadow",
                "Admission and reliability",
                "refused RESOURCE_EXHAUSTED, over the bytes bound",
            ):
                assert expected in text, expected
            data = shot.read_bytes()
            assert data.startswith(b"\x89PNG") and len(data) > 20_000
            page.wait("Page.loadEventFired", timeout=30)  # <meta http-equiv="refresh">: it reloads by itself
            assert page.problems == [], page.problems
            # The detector is real: a missing page is reported as a failed load.
            missing = browser.open(url + "/nope")
            assert any("404" in p for p in missing.problems), missing.problems
    finally:
        stop.set()
        sender.join(10)
    print(f"screenshot: {shot}")
