"""Smoke check of the chaos suite (benchmarks/chaos): every scenario runs briefly against real
servers and accounts for every request it sent. It checks the tool, not the figures (those come
from ``python -m benchmarks.chaos`` on a quiet machine, in RESULTS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_chaos_suite_runs_every_scenario_and_accounts_for_every_request(tmp_path):
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["scenario"]: r for r in json.loads(out.read_text())}
    assert set(results) == {
        "sigterm (one process, clients watch health)",
        "sigterm (--workers 2, clients watch health)",
        "sigterm (one process, clients ignore health)",
        "sigterm (--workers 2, clients ignore health)",
        "kill -9 workers",
        "version churn",
        "flags churn",
        "hostile messages",
    }
    for r in results.values():
        load = r["load"]
        assert load["sent"] == sum(load["outcomes"].values()) > 0
        assert load["outcomes"].get("OK", 0) > 0, r
        assert r["stall_ms"] >= 0
    for name in (
        "sigterm (one process, clients watch health)",
        "sigterm (one process, clients ignore health)",
    ):
        assert results[name]["extra"]["exit codes"] == [0]
    watched = results["sigterm (one process, clients watch health)"]["load"]["outcomes"]
    assert not any(k.startswith("lost") for k in watched), watched
    assert results["kill -9 workers"]["extra"]["supervisor alive"] is True
    flags = results["flags churn"]["extra"]
    assert flags["taken"] > 0 and flags["refused"] > 0
    hostile = results["hostile messages"]
    assert set(hostile["hostile"]["outcomes"]) <= {"RESOURCE_EXHAUSTED", "NOT_FOUND", "INVALID_ARGUMENT"}
    before, peak, after = hostile["rss_mib"]
    assert 0 < before <= peak and after > 0
    assert "| scenario | sent | OK |" in proc.stdout
