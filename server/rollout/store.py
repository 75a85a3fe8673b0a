"""Where rollouts live on disk: ``--rollout-dir`` (default ``.rollouts`` beside the flags file)::

    .rollouts/digits.json                 the model's rollout (the running one, or the last finished one)
    .rollouts/done/digits-3-<time>.json   earlier rollouts of the model, moved aside when a new one starts
    .rollouts/tallies/digits.<worker>.json    under --workers: each worker's counts for the running rollout
    .rollouts/commands/<id>.json          under --workers: a start or abort for the leader, and its
    .rollouts/commands/<id>.reply.json    reply (the worker that took the RPC waits for it)

Every file is written whole and renamed into place (a reader sees the old file or the new one), so a
crash leaves either state, and an operator can read the truth with ``cat``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ortserve.errors import ServeError
from ortserve.repository.files import write_atomic
from ortserve.repository.layout import check_model_name
from ortserve.rollout.state import Rollout

__all__ = ["RolloutStore"]

log = logging.getLogger("ortserve.rollout")

_TALLIES, _COMMANDS, _DONE = "tallies", "commands", "done"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.error("rollout file %s cannot be read: %s", path, e)
        return None
    return data if isinstance(data, dict) else None


class RolloutStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- rollouts ----------------------------------------------------------------------------------
    def path(self, model: str) -> Path:
        return self.root / f"{check_model_name(model)}.json"

    def load(self, model: str) -> dict[str, Any] | None:
        return _read_json(self.path(model))

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if not p.name.startswith("."))

    def rollouts(self) -> list[Rollout]:
        """Every model's rollout whose record reads back (one that does not is logged and left alone)."""
        out = []
        for model in self.models():
            try:
                out.append(Rollout.from_dict(self.load(model) or {}))
            except (KeyError, ValueError, TypeError, ServeError) as e:
                log.error("rollout record %s cannot be read, left alone: %s", self.path(model), e)
        return out

    def stamp(self, model: str) -> int:
        """Changes when the model's rollout file is rewritten (0: none)."""
        try:
            return os.stat(self.path(model)).st_mtime_ns
        except OSError:
            return 0

    def save(self, record: dict[str, Any]) -> None:
        write_atomic(self.path(record["model"]), json.dumps(record, separators=(",", ":")) + "\n")

    def archive(self, model: str) -> None:
        """Move the model's finished rollout aside (``done/<id>.json``) before a new one starts."""
        old = self.load(model)
        if old is None:
            return
        done = self.root / _DONE
        done.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(model), done / f"{old.get('id') or model + '-' + str(int(time.time()))}.json")

    # -- worker tallies ----------------------------------------------------------------------------
    def write_tally(self, model: str, worker: str, data: dict[str, Any]) -> None:
        write_atomic(self.root / _TALLIES / f"{check_model_name(model)}.{worker}.json", json.dumps(data))

    def read_tallies(self, model: str) -> list[dict[str, Any]]:
        folder = self.root / _TALLIES
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.glob(f"{check_model_name(model)}.*.json")):
            data = _read_json(p)
            if data is not None and p.name.count(".") == model.count(".") + 2:
                out.append(data)
        return out

    # -- commands to the leader (--workers) -------------------------------------------------------
    def put_command(self, command: dict[str, Any]) -> str:
        cid = f"{time.time_ns()}-{os.getpid()}"
        write_atomic(self.root / _COMMANDS / f"{cid}.json", json.dumps({**command, "id": cid}))
        return cid

    def take_commands(self) -> list[dict[str, Any]]:
        """Commands waiting for the leader, oldest first; each is removed as it is taken."""
        folder = self.root / _COMMANDS
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.glob("*.json")):
            if p.name.endswith(".reply.json") or p.name.startswith("."):
                continue
            data = _read_json(p)
            p.unlink(missing_ok=True)
            if data is not None:
                out.append(data)
        return out

    def reply(self, cid: str, reply: dict[str, Any]) -> None:
        write_atomic(self.root / _COMMANDS / f"{cid}.reply.json", json.dumps(reply))

    def take_reply(self, cid: str) -> dict[str, Any] | None:
        path = self.root / _COMMANDS / f"{cid}.reply.json"
        data = _read_json(path)
        if data is not None:
            path.unlink(missing_ok=True)
        return data

    def drop_command(self, cid: str) -> None:
        """A command nobody took in time: withdraw it (the leader may still have taken it)."""
        (self.root / _COMMANDS / f"{cid}.json").unlink(missing_ok=True)
