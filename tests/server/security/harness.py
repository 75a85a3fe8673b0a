"""What the security tests share: a repository, an auth file with one key per role, and the real
server in process (``App``) or as a subprocess."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

from ortserve.edge.principals import hash_key, new_key
from ortserve.ops.app import App
from ortserve.ops.settings import Settings
from tests import onnx_models as m
from tests.server.inprocess import run_in_app

ROLES = ("reader", "client", "operator", "admin", "fraud")
FRAUD_ROLE = '[roles.fraud]\ninference = ["fraud-*"]\nmetadata = ["fraud-*"]\n'


def make_repo(root: Path) -> Path:
    m.publish(root, "addmul", 1, m.addmul(), "max_batch_size = 8\n")
    m.publish(root, "fraud-score", 1, m.addmul(offset=1.0), "max_batch_size = 8\n")
    m.publish(root, "spare", 1, m.addmul(offset=2.0))
    return root


def write_auth(path: Path, extra: str = "") -> dict[str, str]:
    """An auth file with one API key per role in ROLES; returns role -> key."""
    keys = {role: new_key() for role in ROLES}
    lines = [FRAUD_ROLE]
    for role, key in keys.items():
        lines.append(f'[[keys]]\nname = "{role}-key"\nsha256 = "{hash_key(key)}"\nroles = ["{role}"]\n')
    path.write_text("\n".join(lines) + extra)
    return keys


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def run_app(repo: Path, body: Callable[[App, str], Awaitable[None]], **settings) -> None:
    """Start the real server in process with ``settings``, run ``body(app, target)``, stop it."""
    base = Settings(model_repository=repo, port=0, metrics_port=-1, flags_poll_interval=0)
    run_in_app(dataclasses.replace(base, **settings), body)


def sample(name: str, reg) -> float:
    """One sample of a Prometheus registry (0.0 when absent)."""
    value = reg.get_sample_value(name)
    return 0.0 if value is None else value
