"""The rollout controller: one per server, acting only in the leader (the server itself, or worker 0 under
``--workers``). Every ``interval`` seconds it looks at each running rollout: adds up what the arms did
(``Collector`` tallies, the other workers' from their files), feeds the judge, and moves the candidate
forward a step, promotes it, rolls it back or reports waiting-for-data (``progress``), moving traffic
only through the flags document (``traffic``). Each transition is logged, audited and exported as
metrics, and the record is written to the store, so a restart resumes at the same step.

    controller = RolloutController(store, flags, models, collector, metrics, audit=audit_log.record)
    await controller.open()                       # resume what the store holds
    spawn(controller.run())
    await controller.start(spec, by="key:ci-bot")  # Admin StartRollout
    await controller.abort("digits", by="key:ops", reason="pager")

Under ``--workers`` the other workers answer the Admin RPCs too: reads come from the store, and a start or
abort is handed to the leader as a command file (``share``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ortserve.core import ModelManager
from ortserve.errors import FailedPrecondition, FlagsError, ModelNotFound, quoted
from ortserve.metrics import Metrics
from ortserve.repository import ConfigError, set_default_version
from ortserve.rollout.collector import Collector
from ortserve.rollout.progress import begin, check_routing, evaluate, figures, observe, point
from ortserve.rollout.progress import export as export_metrics
from ortserve.rollout.share import Share
from ortserve.rollout.source import FlagSource
from ortserve.rollout.spec import RolloutSpec
from ortserve.rollout.state import ABORTED, PROGRESSING, PROMOTED, ROLLED_BACK, WAITING, Rollout
from ortserve.rollout.store import RolloutStore
from ortserve.rollout.tally import Tally
from ortserve.rollout.traffic import KILL, RETIRE, ROUTE, finish, move, planned

__all__ = ["RolloutController"]

log = logging.getLogger("ortserve.rollout")
CONTROLLER = "controller"  # who acts when nobody asked: the judge, a gate, the clock


class RolloutController:
    def __init__(
        self,
        store: RolloutStore,
        flags: FlagSource,
        models: ModelManager,
        collector: Collector,
        metrics: Metrics,
        *,
        leader: bool = True,
        worker: str = "0",
        workers: int = 1,
        interval: float = 1.0,
        log_interval: float = 30.0,
        audit: Callable[..., None] | None = None,
    ) -> None:
        self.store, self.flags, self.models, self.collector = store, flags, models, collector
        self.metrics = metrics
        self.leader, self.worker, self.workers = leader, worker, workers
        self.interval, self.log_interval = interval, log_interval
        self._audit = audit
        self._rollouts: dict[str, Rollout] = {}
        self._lock = asyncio.Lock()
        self._marks: dict[str, Tally] = {}  # totals at each rollout's last history point
        self._wait_logged: dict[str, float] = {}
        self._closed = False
        self.share = Share(store, flags, collector, models, worker, workers, interval)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        """The leader takes up the rollouts the store holds (a restart resumes at the same step)."""
        if not self.leader:
            return
        for r in await asyncio.to_thread(self.store.rollouts):
            model = r.model
            self._rollouts[model] = r
            try:
                await finish(r, self.flags)
            except (FlagsError, OSError) as e:
                log.error("rollout %s of %s: the interrupted move cannot be finished: %s", r.id, model, e)
            if r.active:
                self._watch(r)
                log.info(
                    "rollout %s of %s resumes at %s (%s)", r.id, model, r.step_label(), r.state,
                    extra={"event": "rollout_resumed", "model": model, "rollout": r.id, "step": r.step},
                )  # fmt: skip
            self._export(r)

    async def close(self) -> None:
        """At shutdown: let a look in progress finish (its moves are saved), then act no more."""
        async with self._lock:
            self._closed = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rollout controller: a look at the rollouts failed")

    async def tick(self) -> None:
        await self.collector.settle()
        if self.leader:
            if self.workers > 1:
                await self.share.take_commands(self.start, self.abort)
            async with self._lock:
                for r in list(self._rollouts.values()) if not self._closed else ():
                    if r.active:
                        await self._look(r)
                    elif r.state == PROMOTED and not r.flag_retired:
                        await self._retire(r)
        elif self.workers > 1:
            await self.share.publish()

    # -- the Admin calls ---------------------------------------------------------------------------
    async def start(self, spec: RolloutSpec, by: str, reason: str = "") -> dict[str, Any]:
        if not self.leader:
            return await self.share.ask({"op": "start", "spec": spec.to_dict(), "by": by, "reason": reason})
        async with self._lock:
            r = await self._start(spec, by, reason)
            await self._save(r)
            return r.to_dict()

    async def abort(self, model: str, by: str, reason: str = "") -> dict[str, Any]:
        if not self.leader:
            return await self.share.ask({"op": "abort", "model": model, "by": by, "reason": reason})
        async with self._lock:
            r = self._rollouts.get(model)
            if r is None:
                raise ModelNotFound(f"model {quoted(model)} has no rollout to abort")
            if not r.active:
                raise FailedPrecondition(
                    f"the rollout {r.id} of {quoted(model)} has ended ({r.state}): nothing to abort"
                )
            why = f"aborted by {by}" + (f": {reason}" if reason else "")
            await self._end(r, ABORTED, by, why)
            return r.to_dict()

    async def get(self, model: str) -> dict[str, Any]:
        r = self._rollouts.get(model) if self.leader else None
        data = r.to_dict() if r is not None else await asyncio.to_thread(self.store.load, model)
        if data is None:
            raise ModelNotFound(f"model {quoted(model)} has no rollout (start one: ortserve rollout start)")
        return data

    # -- the leader's work -------------------------------------------------------------------------
    async def _start(self, spec: RolloutSpec, by: str, reason: str) -> Rollout:
        model = spec.model
        loaded = self.models.loaded_versions().get(model)
        if not loaded:
            raise ModelNotFound(self.models.not_loaded_message(model))
        now = time.time()
        r = begin(spec, loaded, self.models.default_version(model), self._rollouts.get(model), by, now)
        try:
            self.flags.validate(json.dumps({"flags": {model: planned(r, ROUTE)}}))
        except FlagsError as e:
            raise FailedPrecondition(f"the rollout's flag is refused, nothing changed: {e}") from None
        await asyncio.to_thread(self.store.archive, model)
        self._rollouts[model] = r
        self._watch(r)
        what = f"version {r.spec.candidate} against {r.spec.baseline}, steps {list(spec.steps)}%"
        self._transition(r, PROGRESSING, now, by, (reason + "; " if reason else "") + f"started: {what}")
        try:
            await self._move(r, ROUTE)
        except (FlagsError, OSError) as e:
            await self._end(
                r, ABORTED, CONTROLLER, f"the rollout's flag cannot be written: {e}", switch=False
            )
            raise FailedPrecondition(f"the rollout's flag cannot be written, nothing changed: {e}") from None
        return r

    def _watch(self, r: Rollout) -> None:
        self.collector.watch(r.model, r.id, r.spec.baseline, r.spec.candidate, r.spec.latency_slo_ms / 1000)

    async def _look(self, r: Rollout) -> None:
        now = time.time()
        own = self.collector.tally(r.model, r.id)
        if own is not None:
            r.ledger.update(self.worker, os.getpid(), own)
        if self.workers > 1:
            await self.share.gather(r)
        observe(r, r.ledger.total(), now)
        trouble = check_routing(
            r, self.flags.flags.text, self.models.loaded_versions().get(r.model, frozenset())
        )
        if trouble is not None:
            state, reason, switch = trouble
            await self._end(r, state, CONTROLLER, reason, {"check": "routing", **figures(r)}, switch)
            return
        d = evaluate(r, now)
        if d.action == "rollback":
            await self._end(r, ROLLED_BACK, CONTROLLER, d.reason, d.evidence)
            return
        if d.action == "advance":
            await self._next_step(r, now, d.reason)
        elif d.action == "promote":
            await self._promote(r, now, d.reason)
        elif d.action == "wait":
            if r.state != WAITING:
                r.waiting_since = now
                self._transition(r, WAITING, now, CONTROLLER, d.reason, needed=r.needed)
            r.reason = d.reason
            if now - self._wait_logged.get(r.model, 0.0) >= self.log_interval:
                self._wait_logged[r.model] = now
                log.warning(
                    "rollout %s of %s is waiting for data: %s", r.id, r.model, d.reason,
                    extra={"event": "rollout_waiting", "model": r.model, "needed": r.needed},
                )  # fmt: skip
        elif r.state == WAITING:
            self._transition(r, PROGRESSING, now, CONTROLLER, f"data arrived at {r.step_label()}")
        self._point(r, now)
        self._export(r)
        await self._save(r)

    async def _next_step(self, r: Rollout, now: float, reason: str) -> None:
        if r.phase == "shadow":
            r.phase, r.step = "canary", 0
        else:
            r.step += 1
        r.weight = r.spec.steps[r.step]
        r.at_step, r.step_started, r.waiting_since = r.total.copy(), now, 0.0
        try:
            await self._move(r, ROUTE)
        except (FlagsError, OSError) as e:
            await self._end(r, ROLLED_BACK, CONTROLLER, f"the next step's flag was refused: {e}")
            return
        r.needed = r.spec.step_requests
        self._transition(r, PROGRESSING, now, CONTROLLER, f"{reason}; now {r.step_label()}", **figures(r))

    async def _promote(self, r: Rollout, now: float, reason: str) -> None:
        model, candidate = r.model, r.spec.candidate
        try:
            if r.weight != 100:
                r.weight = 100
                await self._move(r, ROUTE)  # everyone on the candidate while the default moves
            await asyncio.to_thread(set_default_version, self.models.root / model, candidate)
        except (FlagsError, ConfigError, OSError, ValueError) as e:
            r.reason = f"promotion waits: {e}"  # tried again at the next look
            log.error("rollout %s of %s: %s", r.id, model, r.reason)
            return
        await self.models.adopt_default(model)
        why = f"{reason}; version {candidate} is now the default version of {quoted(model)}"
        self._transition(r, PROMOTED, now, CONTROLLER, why, **figures(r))
        r.needed = 0
        self.collector.unwatch(model)
        await self._retire(r)

    async def _retire(self, r: Rollout) -> None:
        """After promotion: remove the flag once every worker serves the candidate as the default."""
        if r.flag_retired or (self.workers > 1 and not await self.share.all_on_default(r)):
            return
        if self.models.default_version(r.model) != r.spec.candidate:
            await self.models.adopt_default(r.model)
            return
        try:
            await self._move(r, RETIRE)
        except (FlagsError, OSError) as e:
            log.error("rollout %s of %s: the flag cannot be retired yet: %s", r.id, r.model, e)
            return
        r.flag_retired = True
        self._record(
            r,
            "flag_retired",
            CONTROLLER,
            f"the flag {quoted(r.model)} is retired: the default version serves",
        )
        await self._save(r)

    async def _end(
        self,
        r: Rollout,
        state: str,
        by: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
        switch: bool = True,
    ) -> None:
        now = time.time()
        if switch:
            try:
                await self._move(r, KILL)
            except (FlagsError, OSError) as e:
                try:  # the kill switch names a version that is gone: take the flag away instead
                    await self._move(r, RETIRE)
                except (FlagsError, OSError) as e2:
                    log.error("rollout %s of %s: the flags cannot be written: %s; %s", r.id, r.model, e, e2)
                    reason += f" (the flags could not be written: {e2})"
        r.evidence = evidence
        self._transition(r, state, now, by, reason, **({"evidence": evidence} if evidence else {}))
        r.needed = 0
        if switch:
            r.weight = 0
        self.collector.unwatch(r.model)
        self._point(r, now, force=True)
        self._export(r)
        await self._save(r)

    async def _move(self, r: Rollout, kind: str) -> None:
        await move(r, self.flags, kind, self._save)

    # -- records -------------------------------------------------------------------------------------
    def _transition(self, r: Rollout, state: str, now: float, by: str, reason: str, **figures: Any) -> None:
        entry = r.transition(state, now, by, reason, **figures)
        self.metrics.rollout_transitions.labels(r.model, state).inc()
        self._record(r, "transition", by, reason, entry=entry)
        self._export(r)

    def _record(
        self, r: Rollout, what: str, by: str, reason: str, entry: dict[str, Any] | None = None
    ) -> None:
        level = logging.WARNING if r.state in (ROLLED_BACK, ABORTED, WAITING) else logging.INFO
        log.log(
            level, "rollout %s of %s: %s%s: %s", r.id, r.model, r.state,
            "" if reason.startswith(r.step_label()) else f" at {r.step_label()}", reason,
            extra={"event": "rollout", "model": r.model, "rollout": r.id, "state": r.state, "weight": r.weight},
        )  # fmt: skip
        if self._audit is not None:
            fields = {k: v for k, v in (entry or {}).items() if k not in ("time", "by", "reason")}
            self._audit(
                "rollout", principal=by, model=r.model, rollout=r.id, action=what, reason=reason,
                state=r.state, **{k: v for k, v in fields.items() if k != "state"},
            )  # fmt: skip

    def _point(self, r: Rollout, now: float, force: bool = False) -> None:
        before = len(r.history)
        if force:
            r.period = 0.0
        r.add_point(point(r, now, self._marks.get(r.model)), now, self.interval)
        if len(r.history) != before or force:
            self._marks[r.model] = r.total.copy()

    async def _save(self, r: Rollout) -> None:
        try:
            await asyncio.to_thread(self.store.save, r.to_dict())
        except OSError as e:
            log.error("rollout %s of %s cannot be saved to %s: %s", r.id, r.model, self.store.root, e)

    def _export(self, r: Rollout) -> None:
        export_metrics(self.metrics, r)
