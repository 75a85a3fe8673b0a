"""The status page's "Rollouts" section: a real rollout started and aborted through Admin on a real server is
shown as the controller records it (read from the rollout folder in the page's thread), and the section's
rendering (states, evidence, escaping, unreadable records left out)."""

from __future__ import annotations

import json

from ortserve.admin_client import AdminClient
from ortserve.ops.status.render import render_page
from ortserve.ops.status.rollouts import RolloutState, read_rollouts
from ortserve.ops.status.state import ServerState
from tests.server.rollout.harness import make_repo
from tests.server.test_status_page import get, wait_status

SLOW = "steps = [10, 50]\nstep_seconds = 600\nstep_requests = 1000\nidle_seconds = 600\n"


def test_a_real_rollout_on_the_page(tmp_path, start_server):
    repo = make_repo(tmp_path / "models", versions=(1, 2))
    server = start_server(
        repo, "--status-interval", "0.2", "--rollout-interval", "0.1", "--drift-sample-rate", "0"
    )
    base = f"http://127.0.0.1:{server.metrics_port}"
    with AdminClient(server.target) as admin:
        admin.start_rollout("clf", "2", spec=SLOW, reason="try v2")
        doc = wait_status(base + "/status.json", lambda d: d["state"] and d["state"]["rollouts"])
        (r,) = doc["state"]["rollouts"]
        assert (r["model"], r["baseline"], r["candidate"]) == ("clf", "1", "2")
        assert (r["state"], r["phase"], r["step"], r["weight"]) == (
            "progressing",
            "canary",
            "step 1 of 2",
            10,
        )
        assert r["threshold"] == 20 and r["e_value"] <= 1 and r["id"]
        html = get(base + "/")[2].decode()
        assert "<h2>Rollouts</h2>" in html and "1 → 2" in html and "step 1 of 2 · 10%" in html
        assert '<span class="ok">progressing</span>' in html

        admin.abort_rollout("clf", reason="paged <now>")
        doc = wait_status(base + "/status.json", lambda d: d["state"]["rollouts"][0]["state"] == "aborted")
        assert doc["state"]["rollouts"][0]["state"] == "aborted"
        html = get(base + "/")[2].decode()
        assert '<span class="dim">aborted</span>' in html and "paged &lt;now&gt;" in html


def test_the_section_and_unreadable_records(tmp_path):
    (tmp_path / "clf.json").write_text(
        json.dumps(
            {
                "id": "r1", "model": "clf", "baseline": "1", "candidate": "3", "state": "rolled-back",
                "reason": "errors: e-value 23 reached 20", "phase": "canary", "step": 1, "steps": [10, 50],
                "weight": 0, "needed": 0, "e_value": 23.4, "threshold": 20.0, "updated": 1000.0,
            }
        )
    )  # fmt: skip
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / ".clf.json.tmp").write_text("{}")
    (r,) = read_rollouts(tmp_path)
    assert r == RolloutState(
        "clf", "r1", "1", "3", "rolled-back", "canary", "step 2 of 2", 0, 0, 23.4, 20.0,
        "errors: e-value 23 reached 20", 1000.0,
    )  # fmt: skip
    assert read_rollouts(tmp_path / "none") == ()
    html = render_page(ServerState("server", rollouts=(r,), taken=1030.0), {}, window=60, refresh=5)
    assert '<span class="bad">rolled-back</span>' in html and '<span class="bad">23.4</span> of 20' in html
    assert "30 s ago" in html
    assert "<h2>Rollouts</h2>" not in render_page(ServerState("server"), {}, window=60, refresh=5)
