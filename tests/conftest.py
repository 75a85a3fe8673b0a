"""Fixtures that run the real server (``python -m ortserve``) on loopback ephemeral ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from ortserve.testing import ServerProcess

__all__ = ["ServerProcess"]


@pytest.fixture(scope="module")
def server(repo):
    """The real server over the test module's ``repo`` fixture, shared by the module's tests."""
    s = ServerProcess(repo)
    yield s
    assert s.stop() == 0


@pytest.fixture
def start_server():
    started: list[ServerProcess] = []

    def start(repo: Path, *args: str, **kw) -> ServerProcess:
        server = ServerProcess(repo, *args, **kw)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()
