"""Rollouts on the server as a process (``python -m ortserve``): a restart in the middle resumes at the same
step with the same evidence, and the ``ortserve rollout`` CLI starts, follows, aborts and reports."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading

import pytest

from ortserve.admin_client import AdminClient, status_dict
from ortserve.client import Client
from tests.server.rollout.harness import make_repo, row

FAST = ("--rollout-interval", "0.1", "--flags-poll-interval", "0.2", "--drift-sample-rate", "0")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ortserve", "rollout", *args], capture_output=True, text=True, timeout=timeout
    )


def send(target: str, n: int, rng: random.Random) -> list[str]:
    with Client(target) as client:
        return [
            client.predict("clf", {"x": row(rng)}, targeting_key=f"k{rng.random()}").version for _ in range(n)
        ]


class Background:
    """Requests from a thread until stopped."""

    def __init__(self, target: str) -> None:
        self.target, self.stop = target, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(1)
        with Client(self.target) as client:
            while not self.stop.is_set():
                with contextlib.suppress(Exception):
                    client.predict("clf", {"x": row(rng)}, targeting_key=f"k{rng.random()}")

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


def test_a_restart_mid_rollout_resumes_at_the_same_step(repo, start_server):
    server = start_server(repo, *FAST)
    spec = "steps = [10, 50]\nstep_seconds = 0.2\nstep_requests = 15\nidle_seconds = 60\n"
    rng = random.Random(0)
    with AdminClient(server.target) as admin:
        admin.start_rollout("clf", "2", spec=spec)
        for _ in range(2000):  # one request at a time until the rollout reaches its second step
            send(server.target, 1, rng)
            before = admin.get_rollout("clf")
            if before.step == 1:
                break
        assert (before.step, before.weight) == (1, 50) and before.state in ("progressing", "waiting-for-data")
    record = status_dict(before)
    assert server.stop() == 0
    flags = json.loads((repo / "flags.json").read_text())["flags"]["clf"]
    assert flags["targeting"]["fractional"] == [["baseline", 50], ["candidate", 50]]  # the truth on disk

    again = start_server(repo, *FAST)
    again.wait_log("resumes at step 2 of 2 (50%)")
    with AdminClient(again.target) as admin:
        resumed = admin.get_rollout("clf")
        assert (resumed.id, resumed.step, resumed.weight) == (before.id, 1, 50)
        assert resumed.state in ("progressing", "waiting-for-data")
        kept = status_dict(resumed)
        assert kept["total"]["candidate"]["requests"] >= record["total"]["candidate"]["requests"] > 0
        assert (
            kept["judge"] == record["judge"]
            or kept["judge"]["tests"].keys() == record["judge"]["tests"].keys()
        )
        assert kept["step_started"] == record["step_started"], (kept["transitions"], record["transitions"])
        send(again.target, 60, rng)  # the rest of the step's requests: then it is promoted
        for _ in range(200):
            done = admin.get_rollout("clf")
            if done.state == "promoted":
                break
            send(again.target, 1, rng)
        assert done.state == "promoted"
        counted = status_dict(done)["total"]["candidate"]["requests"]
        assert counted >= kept["total"]["candidate"]["requests"] + 15  # both lifetimes' counts, added
    assert again.stop() == 0


def test_the_cli_starts_follows_aborts_and_reports(repo, start_server, tmp_path):
    server = start_server(repo, *FAST)
    target = ("--target", server.target)
    out = cli(
        "start",
        *target,
        "--model",
        "clf",
        "--candidate",
        "3",
        "--steps",
        "30,60",
        "--step-requests",
        "100000",
    )
    assert out.returncode == 0, out.stderr
    assert "progressing, step 1 of 2 (30%)" in out.stdout and "candidate 3 against baseline 1" in out.stdout
    with Background(server.target):
        follow = cli("status", *target, "--model", "clf", "--wait")
    assert follow.returncode == 1, follow.stderr  # --wait ended in a rollback
    assert "rolled-back" in follow.stdout and "errors" in follow.stdout
    status = cli("status", *target, "--model", "clf", "--json")
    assert json.loads(status.stdout)["state"] == "rolled-back"
    png = tmp_path / "clf.png"
    report = cli("report", *target, "--model", "clf", "--png", str(png))
    assert report.returncode == 0, report.stderr
    assert (
        "decision: rolled back" in report.stdout
        and "candidate" in report.stdout
        and "accuracy" in report.stdout
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    as_json = json.loads(cli("report", *target, "--model", "clf", "--json", "--no-png").stdout)
    assert as_json["judge"]["tests"]["errors"]["candidate_events"] > 0

    started = cli(
        "start", *target, "--model", "clf", "--candidate", "2", "--step-requests", "100000", "--reason", "r"
    )
    assert started.returncode == 0, started.stderr
    aborted = cli("abort", *target, "--model", "clf", "--reason", "paged")
    assert aborted.returncode == 0 and "aborted" in aborted.stdout and "paged" in aborted.stdout
    missing = cli("status", *target, "--model", "nope")
    assert missing.returncode == 2 and "NOT_FOUND" in missing.stderr and "has no rollout" in missing.stderr
    bad = cli("start", *target, "--model", "clf", "--candidate", "2", "--steps", "50,10")
    assert bad.returncode == 2 and "INVALID_ARGUMENT" in bad.stderr and "increasing" in bad.stderr
    assert server.stop() == 0


def test_the_cli_without_a_server_says_so():
    out = cli("status", "--model", "clf", "--target", "127.0.0.1:1", "--timeout", "2")
    assert out.returncode == 2 and "UNAVAILABLE" in out.stderr
