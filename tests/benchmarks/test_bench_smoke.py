"""Smoke checks of the benchmark harness (benchmarks/): it works end to end against a real server.

They assert that the tools run and report sensibly, not any figure: the figures come from
``make bench`` on a quiet machine. The whole file takes a few seconds of load.

Whatever sends V2 requests runs in a subprocess: the harness uses ``ortserve._proto.inference``,
whose protobuf symbols clash with tritonclient's, which tests/server/test_v2.py imports into this
process. Scripts run as modules from the repository root (``python -m benchmarks.loadgen``), the
way the Makefile and the README run them."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import common, compare_report, loadgen, overload
from ortserve.client import AsyncClient
from ortserve.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]

X = {"input": (np.random.default_rng(0).random((1, 64)) * 16).astype(np.float32)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("bench") / "models"
    common.publish(repo, "digits", 1, common.digits_stand_in(), common.DIGITS_CONFIG)
    s = ServerProcess(repo)
    yield s
    s.stop()


def run_module(module: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_loadgen_closed_and_open_loop(server):
    async def run():
        async with AsyncClient(server.target) as c:
            send = loadgen.predict_sender(c, "digits", X)
            closed = await loadgen.measure(
                lambda: loadgen.closed_loop(send, 4, 0.5, 0.2), server.metrics_url, "digits", 0.2
            )
            opened = await loadgen.measure(
                lambda: loadgen.open_loop(send, 200, 0.5, 0.2), server.metrics_url, "digits", 0.2
            )
            missing = await loadgen.closed_loop(loadgen.predict_sender(c, "nope", X), 1, 0.2, 0.0)
            return closed, opened, missing

    closed, opened, missing = loadgen.run_async(run())
    assert closed.requests > 0 and closed.errors == {} and closed.mode == "closed"
    assert 0 < closed.p50_ms <= closed.p99_ms <= closed.max_ms
    assert closed.served == {"1": closed.requests}
    assert closed.mean_batch is not None and closed.mean_batch >= 1 and closed.batches > 0
    assert opened.mode == "open" and opened.rate_rps == 200 and opened.errors == {}
    assert 40 <= opened.sent <= 200  # Poisson: ~100 in 0.5 s
    assert opened.requests == opened.sent and opened.served == {"1": opened.requests}
    assert 0 < opened.p99_from_send_ms <= opened.max_ms + 1
    assert missing.requests == 0 and set(missing.errors) == {"NOT_FOUND"} and missing.errors["NOT_FOUND"] > 0


def test_loadgen_cli_v2_closed_and_open_loop_writes_json_and_csv(server, tmp_path):
    args = ["--target", server.target, "--protocol", "v2", "--duration", "0.3", "--warmup", "0.1",
              "--metrics-url", server.metrics_url]  # fmt: skip
    run_module("benchmarks.loadgen", *args, "--concurrency", "1,2", "--json", str(tmp_path / "c.json"),
               "--csv", str(tmp_path / "c.csv"))  # fmt: skip
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [(r["mode"], r["concurrency"]) for r in rows] == [("closed", 1), ("closed", 2)]
    assert all(r["requests"] > 0 and r["label"] == "v2 digits" and r["mean_batch"] >= 1 for r in rows)
    csv_lines = (tmp_path / "c.csv").read_text().splitlines()
    assert csv_lines[0].startswith("concurrency,duration_s,requests,throughput_rps") and len(csv_lines) == 3
    out = run_module("benchmarks.loadgen", *args, "--rate", "300").stdout
    (opened,) = json.loads(out)
    assert opened["mode"] == "open" and opened["sent"] > 0 and opened["requests"] == opened["sent"]


def test_open_loop_is_bounded_and_counts_generator_backlog():
    async def slow(_: int) -> str:
        await asyncio.sleep(0.2)
        return "1"

    result = asyncio.run(loadgen.open_loop(slow, 500, 0.3, 0.0, max_in_flight=5, drain_timeout=0.05))
    assert result.errors.get("CLIENT_BACKLOG", 0) > 0
    assert result.concurrency <= 5


def test_overload_capacity_floor_keeps_the_offered_rate_above_zero():
    smoke = overload.Overload(duration_s=1.0, capacity_s=0.5, factor=3.0)
    full = overload.Overload(duration_s=10.0, capacity_s=5.0, factor=3.0)
    # at least MIN_REQUESTS offered in the window, and never under 1 req/s
    assert overload.capacity_floor(smoke) * smoke.factor * smoke.duration_s >= overload.MIN_REQUESTS
    assert overload.capacity_floor(full) == 1.0
    for bad in ({"factor": 0.0}, {"duration_s": 0.0}, {"capacity_s": -1.0}):
        with pytest.raises(ValueError):
            overload.Overload(**bad)


@pytest.mark.skipif(
    shutil.which("locust", path=str(Path(sys.executable).parent)) is None,
    reason="locust is not installed (pip install locust)",
)
def test_locust_users_run_headless(server, tmp_path):
    locust = str(Path(sys.executable).parent / "locust")
    runs = {
        protocol: subprocess.Popen(
            [
                locust,
                "-f",
                str(ROOT / "benchmarks" / "locustfile.py"),
                "--headless",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                "8s",  # 2 s once left a loaded machine's v2 run without one answered request
                "--host",
                server.target,
                "--protocol",
                protocol,
                "--json",
                "--skip-log",
                "--only-summary",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for protocol in ("v1", "v2")
    }
    for protocol, proc in runs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        stats = json.loads(out)
        names = {s["name"]: s for s in stats}
        expected = "Predict digits@1" if protocol == "v1" else "ModelInfer digits@1"
        assert expected in names, names.keys()
        assert names[expected]["num_requests"] > 0 and names[expected]["num_failures"] == 0


def test_bench_compare_smoke_writes_its_section_and_plots(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## server core: Predict throughput and latency\n\nkept\n")
    plots = tmp_path / "plots"
    run_module("benchmarks.bench_compare", "--smoke", "--concurrency", "4", "--workers", "2", "--results",
               str(results), "--plots", str(plots), "--json", str(tmp_path / "all.json"))  # fmt: skip
    text = results.read_text()
    assert "## server core: Predict throughput and latency\n\nkept" in text  # other sections intact
    assert "## load comparison: ortserve vs raw ONNX Runtime and MLServer" in text
    assert "### Targets" in text and "### Overload" in text
    assert {p.name for p in plots.glob("*.png")} >= {
        "latency_throughput_digits.png",
        "latency_throughput_cnn.png",
        "overload_cnn.png",
    }
    data = json.loads((tmp_path / "all.json").read_text())
    labels = {s["label"] for s in data["series"]}
    assert {"ortserve v1, batching on", "ortserve v1, batching off", "ortserve V2, batching on"} <= labels
    # --workers 2 either ran or is reported as skipped, with the reason.
    assert "ortserve v1, --workers 2" in labels or any("--workers 2" in s for s in data["skipped"])
    assert all(p["requests"] > 0 for s in data["series"] for p in s["points"])
    o = data["overload"]
    assert o["result"]["sent"] > 0 and o["capacity_rps"] > 0
    assert o["capacity_rps"] >= o["capacity_floor_rps"] > 0
    # A capacity below the floor (a busy machine) is reported as a floor, with what was measured.
    floored = {**o, "capacity_floored": True, "capacity_measured_rps": 0.0}
    section = compare_report.markdown({**data, "overload": floored}, [], tmp_path)
    assert "the floor used because 0.0 req/s was measured" in section
    # a second run replaces the section instead of appending another
    common.write_section(compare_report.HEAD + "\n\nagain\n", compare_report.HEAD, results)
    text = results.read_text()
    assert text.count("## load comparison") == 1 and "again" in text and "kept" in text


def test_bench_peers_smoke_writes_one_table_with_cpu_per_request(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## other\n\nkept\n")
    run_module("benchmarks.bench_peers", "--smoke", "--concurrency", "4", "--results", str(results),
               "--json", str(tmp_path / "peers.json"))  # fmt: skip
    data = json.loads((tmp_path / "peers.json").read_text())
    rows = {r["server"]: r for r in data["rows"] if r["model"] == "digits" and not r["skipped"]}
    for server in ("ortserve Predict (v1)", "ortserve V2 ModelInfer"):
        assert rows[server]["throughput_rps"] > 0 and not rows[server]["errors"]
        assert rows[server]["cpu_us_per_request"] > 0
    assert rows["raw ONNX Runtime"]["throughput_rps"] > 0
    # perf_analyzer ran, or is listed as skipped with what it needs
    assert "perf_analyzer -> ortserve V2" in rows or any(
        r["server"].startswith("perf_analyzer") and r["skipped"] for r in data["rows"]
    )
    text = results.read_text()
    assert "## other\n\nkept" in text and "## Peers at their best (bench_peers)" in text
    assert "| ortserve V2 ModelInfer |" in text and "server CPU µs/req" in text


def test_bench_batching_smoke_compares_both_arms_with_the_raw_limit(tmp_path):
    results = tmp_path / "RESULTS.md"
    run_module("benchmarks.bench_batching", "--smoke", "--results", str(results),
               "--json", str(tmp_path / "batching.json"))  # fmt: skip
    arms = json.loads((tmp_path / "batching.json").read_text())["arms"]
    assert [a["arm"] for a in arms] == ["adaptive", "fixed window"]
    for arm in arms:
        assert arm["raw_rps"] > 0 and arm["rps"][0] > 0 and arm["cpu_us"][0] > 0
    assert "## Adaptive batching" in results.read_text()


@pytest.mark.slow
def test_bench_security_smoke_runs_every_arm_without_errors():
    cmd = [sys.executable, "-m", "benchmarks.bench_security", "--duration", "0.3", "--rounds", "1",
           "--concurrency", "4"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    cells = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| ")]
    arms = [row for row in cells if len(row) == 8 and "req/s" not in row[1]]
    assert [r[0][2:] for r in arms] == ["plaintext", "api key", "jwt (cached)", "tls", "tls + api key"]
    assert all(r[-1].strip(" |") == "0" for r in arms)  # no errors in any arm
    links = [row for row in cells if len(row) == 3 and "µs per call" not in row[1]]
    assert [r[0][2:] for r in links] == ["api key", "jwt (cached)"]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git repository")
def test_bench_ab_serves_a_revision_and_the_working_tree():
    """A revision checked out into its own folder serves (and is removed after); every revision
    gets its rounds."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_ab",
            "HEAD",
            "--rounds",
            "1",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| HEAD | **" in proc.stdout and "| working tree | **" in proc.stdout, proc.stdout
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True)
    assert "bench_ab" not in worktrees.stdout and "/tree " not in worktrees.stdout
