"""Fixtures that run the real server (``python -m server``) on loopback ephemeral ports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server.testing import ServerProcess  # noqa: E402

__all__ = ["ServerProcess"]


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
