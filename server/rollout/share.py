"""Rollouts under ``--workers``: one leader (worker 0) acts, every worker counts and answers.

- Each worker's ``Collector`` counts its own share of the traffic; ``publish`` writes it to
  ``tallies/<model>.<worker>.json`` every interval, and the leader's ``gather`` adds them up (per worker
  and process id, so a worker that restarts does not count twice or lose what it counted).
- A follower learns of rollouts from the store's files; after a promotion it takes the new default
  version from config.toml at once and says so in its tally file, and the leader retires the flag when
  every worker serves the candidate by default and routes with the promoted flag (``all_on_default``).
- A StartRollout or AbortRollout that reaches a follower becomes a command file; the leader carries it
  out at its next look and writes the reply the follower waits for (``ask``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ortserve.core import ModelManager
from ortserve.errors import (
    FailedPrecondition,
    InternalError,
    InvalidInput,
    ModelNotFound,
    ServeError,
    Unavailable,
)
from ortserve.rollout.collector import Collector
from ortserve.rollout.source import FlagSource
from ortserve.rollout.spec import RolloutSpec, spec_from_dict
from ortserve.rollout.state import ACTIVE, PROMOTED, Rollout
from ortserve.rollout.store import RolloutStore
from ortserve.rollout.tally import Tally
from ortserve.rollout.traffic import flag_in_force

__all__ = ["Share"]

_ERRORS: dict[str, type[ServeError]] = {
    cls.__name__: cls for cls in (FailedPrecondition, InvalidInput, ModelNotFound, Unavailable)
}


class Share:
    def __init__(
        self,
        store: RolloutStore,
        flags: FlagSource,
        collector: Collector,
        models: ModelManager,
        worker: str,
        workers: int,
        interval: float,
    ) -> None:
        self.store, self.flags, self.collector, self.models = store, flags, collector, models
        self.worker, self.workers, self.interval = worker, workers, interval
        self._seen: dict[str, tuple[int, dict[str, Any]]] = {}  # model -> (file stamp, record)

    @property
    def fresh_s(self) -> float:
        """A tally file older than this is from a worker that stopped."""
        return max(10.0, 5 * self.interval)

    # -- a follower -----------------------------------------------------------------------------------
    async def publish(self) -> None:
        """A follower: count for the rollouts the leader runs (learnt from their files), and write the
        counts where the leader reads them."""
        for model, rec in (await self._records()).items():
            state, rid = rec["state"], rec["id"]
            if state in ACTIVE:
                self.collector.watch(model, rid, rec["baseline"], rec["candidate"], rec["slo_s"])
            else:
                self.collector.unwatch(model)
            promoting = state == PROMOTED and not rec["flag_retired"]
            if promoting and self.models.default_version(model) != rec["candidate"]:
                await self.models.adopt_default(model)
            if state not in ACTIVE and not promoting:
                continue
            tally = self.collector.tally(model, rid)
            data = {
                "rollout": rid,
                "worker": self.worker,
                "pid": os.getpid(),
                "time": time.time(),
                "tally": tally.to_dict() if tally is not None else None,
                "default": self.models.default_version(model),
                "flag": flag_in_force(self.flags, model),  # the model's flag this worker routes with
            }
            await asyncio.to_thread(self.store.write_tally, model, self.worker, data)

    async def _records(self) -> dict[str, dict[str, Any]]:
        out = {}
        for model in await asyncio.to_thread(self.store.models):
            stamp = await asyncio.to_thread(self.store.stamp, model)
            seen = self._seen.get(model)
            if seen is None or seen[0] != stamp:
                data = await asyncio.to_thread(self.store.load, model)
                if data is None:
                    continue
                try:
                    seen = (stamp, Rollout.from_dict(data).to_summary())
                except (KeyError, ValueError, TypeError, ServeError):
                    continue
                self._seen[model] = seen
            out[model] = seen[1]
        return out

    # -- the leader ------------------------------------------------------------------------------
    async def gather(self, r: Rollout) -> None:
        """Add the other workers' counts for ``r`` to its ledger."""
        for data in await asyncio.to_thread(self.store.read_tallies, r.model):
            worker = str(data.get("worker", ""))
            if data.get("rollout") != r.id or worker == self.worker or data.get("tally") is None:
                continue
            r.ledger.update(worker, int(data.get("pid", 0)), Tally.from_dict(data["tally"]))

    async def all_on_default(self, r: Rollout) -> bool:
        """Every other worker reported, recently, that it serves the candidate by default and routes with
        the promoted flag (all traffic to the candidate): a worker that has not reloaded the flags yet
        would otherwise go on splitting by the last step's weights."""
        now = time.time()
        on = {
            str(d.get("worker"))
            for d in await asyncio.to_thread(self.store.read_tallies, r.model)
            if d.get("rollout") == r.id
            and d.get("default") == r.spec.candidate
            and d.get("flag") == r.flag
            and now - float(d.get("time", 0)) < self.fresh_s
        }
        on.discard(self.worker)
        return len(on) >= self.workers - 1

    async def take_commands(
        self,
        start: Callable[[RolloutSpec, str, str], Awaitable[dict[str, Any]]],
        abort: Callable[[str, str, str], Awaitable[dict[str, Any]]],
    ) -> None:
        """The leader: carry out the followers' commands and write their replies."""
        for command in await asyncio.to_thread(self.store.take_commands):
            cid = str(command.get("id", ""))
            try:
                if command.get("op") == "start":
                    spec = spec_from_dict(command.get("spec"))
                    record = await start(spec, str(command.get("by", "")), str(command.get("reason", "")))
                elif command.get("op") == "abort":
                    record = await abort(
                        str(command.get("model", "")),
                        str(command.get("by", "")),
                        str(command.get("reason", "")),
                    )
                else:
                    raise InvalidInput(f"unknown rollout command {command.get('op')!r}")
                reply: dict[str, Any] = {"ok": True, "record": record}
            except ServeError as e:
                reply = {"ok": False, "error": type(e).__name__, "message": str(e)}
            await asyncio.to_thread(self.store.reply, cid, reply)

    # -- a follower asking the leader --------------------------------------------------------------
    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        cid = await asyncio.to_thread(self.store.put_command, command)
        deadline = time.monotonic() + self.fresh_s + 5
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            reply = await asyncio.to_thread(self.store.take_reply, cid)
            if reply is None:
                continue
            if reply.get("ok"):
                return dict(reply["record"])
            raise _ERRORS.get(str(reply.get("error")), InternalError)(str(reply.get("message", "")))
        await asyncio.to_thread(self.store.drop_command, cid)
        raise Unavailable(
            f"the rollout leader (worker 0) did not answer within {self.fresh_s + 5:.0f} s; nothing was changed"
        )
