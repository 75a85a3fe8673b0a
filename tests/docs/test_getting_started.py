"""Every Python and shell snippet of docs/getting-started.md, run in page order against a real server, with
what it prints checked against the page's Output blocks.

The fast tests serve the demo's version 1 (``python -m ortserve.optimize.demo``, then ``python -m ortserve``:
what ``make serve`` runs, without the optimize variants). The slow test runs the page's setup block itself,
``make serve`` (into a temporary repository), and the snippets against that server. ``make test`` is the
command running this file, so it is checked to exist rather than run. Snippets address the server as
127.0.0.1:8001 / :8002; the tests substitute the ports of the server they started. A snippet that needs a
tool that is not installed (grpcurl) is skipped and says so; the page's Python reflection snippet covers
the same calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ortserve.optimize.demo import build as build_demo
from ortserve.testing import ServerProcess
from tests.docs.snippets import Block, blocks, matches

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
BLOCKS = blocks(PAGE)
PYTHON = [b for b in BLOCKS if b.lang == "python"]
SHELL = [b for b in BLOCKS if b.lang == "sh" and b.mark != "setup"]
SETUP = [b for b in BLOCKS if b.mark == "setup"]
MARKER = "@@snippet {}@@"
DRIVER = """
import json, sys
blocks = json.load(open(sys.argv[1]))
scope = {"__name__": "__main__"}
for i, (line, code) in enumerate(blocks):
    print("\\n" + MARKER.format(i), flush=True)
    exec(compile(code, f"docs/getting-started.md:{line}", "exec"), scope)
"""


def addressed(code: str, grpc_port: int, metrics_port: int) -> str:
    return code.replace("127.0.0.1:8001", f"127.0.0.1:{grpc_port}").replace(
        "127.0.0.1:8002", f"127.0.0.1:{metrics_port}"
    )


def run_python(ports: tuple[int, int], cwd: Path) -> tuple[dict[int, str], subprocess.CompletedProcess]:
    """All Python snippets in one interpreter, in page order (later ones use names earlier ones made)."""
    (cwd / "blocks.json").write_text(json.dumps([(b.line, addressed(b.code, *ports)) for b in PYTHON]))
    (cwd / "driver.py").write_text(f"MARKER = {MARKER!r}\n" + DRIVER)
    proc = subprocess.run(
        [sys.executable, "driver.py", "blocks.json"], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    parts = re.split(r"\n?@@snippet (\d+)@@\n", proc.stdout)
    return {int(i): out for i, out in zip(parts[1::2], parts[2::2], strict=True)}, proc


def run_shell(block: Block, ports: tuple[int, int], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", addressed(block.code, *ports)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_python(outputs: dict[int, str], proc: subprocess.CompletedProcess, index: int) -> None:
    block = PYTHON[index]
    ran = index in outputs and (index + 1 in outputs or proc.returncode == 0)
    assert ran, f"the snippet at docs/getting-started.md:{block.line} failed:\n{proc.stderr[-3000:]}"
    if block.output is not None:
        assert matches(block.output, outputs[index]), (
            f"docs/getting-started.md:{block.line} printed\n{outputs[index]}\nthe page says\n{block.output}"
        )


def check_shell(block: Block, proc: subprocess.CompletedProcess) -> None:
    where = f"docs/getting-started.md:{block.line}"
    assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    if block.output is not None:
        assert matches(block.output, proc.stdout), (
            f"{where} printed\n{proc.stdout}\nthe page says\n{block.output}"
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("getting-started") / "models"
    build_demo(repo, quiet=True)
    server = ServerProcess(repo)
    yield server.port, server.metrics_port
    assert server.stop() == 0


@pytest.fixture(scope="module")
def python_run(served, tmp_path_factory):
    return run_python(served, tmp_path_factory.mktemp("snippets"))


def test_the_page_has_what_the_tests_expect():
    assert len(PYTHON) >= 6 and SHELL and len(SETUP) == 1
    assert all(b.output for b in PYTHON[:1]), "the first prediction shows its output"
    commands = [line.split("#")[0].split() for line in SETUP[0].code.splitlines() if line.strip()]
    assert commands == [["make", "serve"], ["make", "test"]]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"serve", "test"} <= targets  # `make test` runs this file: it exists, it is not run from here


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=[f"line{b.line}" for b in PYTHON])
def test_python_snippet(python_run, index):
    check_python(*python_run, index)


@pytest.mark.parametrize("block", SHELL, ids=[f"line{b.line}" for b in SHELL])
def test_shell_snippet(served, block, tmp_path):
    if block.needs and shutil.which(block.needs) is None:
        pytest.skip(
            f"{block.needs} is not installed here (Debian 12 does not package it); docs/getting-started.md:"
            f"{block.line} is not run. The page's Python reflection snippet makes the same calls and is."
        )
    check_shell(block, run_shell(block, served, tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_make_serve_then_every_snippet(tmp_path):
    """The setup block as the page gives it (``make serve``: install, the demo repository with its optimized
    variants, the server), into a temporary repository on free ports, then every snippet against it."""
    args = [
        "make",
        "serve",
        f"REPO={tmp_path / 'models'}",
        "SERVE_ARGS=--port 0 --metrics-port 0 --log-format json",
    ]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    ready: dict = {}
    seen: list[str] = []
    event = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("{") and '"ready"' in line:
                ready.update(json.loads(line))
                event.set()
        event.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert event.wait(1500) and ready, "make serve did not serve:\n" + "".join(seen[-30:])
        ports = (ready["grpc_port"], ready["metrics_port"])
        outputs, run = run_python(ports, tmp_path)
        for i in range(len(PYTHON)):
            check_python(outputs, run, i)
        for block in SHELL:
            if not block.needs or shutil.which(block.needs):
                check_shell(block, run_shell(block, ports, tmp_path))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the server it started: their own process group
        proc.wait(60)
