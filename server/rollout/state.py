"""A rollout's record: where it stands, what it has counted, the judge's evidence, how it got there.
The controller keeps one per model and persists it (``store``) after every change, so that a restart
resumes at the same step with the same evidence, and any worker can answer GetRollout from the file.

States::

    progressing        traffic is on the candidate at the current step (or mirrored, in the shadow phase)
    waiting-for-data   the step cannot finish: too few candidate requests (``needed`` says how many more)
                       or none at all for ``idle_seconds``; loud on purpose (state, metric, a log line)
    promoted           the candidate is the model's default_version; its flag is retired
    rolled-back        the judge (or a gate, or the deadline) found it worse: 100% to the baseline, evidence kept
    aborted            stopped by an operator (or the flag changed under it): 100% to the baseline
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from ortserve.rollout.judge import Judge
from ortserve.rollout.spec import RolloutSpec, spec_from_dict
from ortserve.rollout.tally import Ledger, Tally

__all__ = [
    "ABORTED",
    "ACTIVE",
    "FINAL",
    "PROGRESSING",
    "PROMOTED",
    "ROLLED_BACK",
    "STATES",
    "WAITING",
    "Rollout",
    "iso",
]

PROGRESSING, WAITING = "progressing", "waiting-for-data"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled-back", "aborted"
STATES = (PROGRESSING, WAITING, PROMOTED, ROLLED_BACK, ABORTED)
ACTIVE = frozenset({PROGRESSING, WAITING})
FINAL = frozenset({PROMOTED, ROLLED_BACK, ABORTED})
MAX_POINTS = 400  # history points kept; beyond, every other one goes and the period doubles


def iso(t: float | None) -> str:
    if not t:
        return ""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Rollout:
    id: str
    spec: RolloutSpec  # baseline filled in
    started: float  # Unix time
    started_by: str
    judge: Judge
    state: str = PROGRESSING
    reason: str = ""
    phase: str = "canary"  # shadow | canary
    step: int = 0  # index into spec.steps (the shadow phase: -1)
    weight: int = 0  # candidate's percent of traffic now
    updated: float = 0.0
    step_started: float = 0.0
    waiting_since: float = 0.0
    last_candidate: float = 0.0  # Unix time the candidate's counts last moved
    needed: int = 0  # candidate requests (or compared rows) the step still needs
    ledger: Ledger = field(default_factory=Ledger)
    total: Tally = field(default_factory=Tally)  # cumulative at the last look
    at_step: Tally = field(default_factory=Tally)  # cumulative when the step began
    psi: float | None = None  # the arms' predicted-class PSI over the last finished step
    evidence: dict[str, Any] | None = None
    flag: dict[str, Any] | None = None  # the model's flag as the controller last wrote it (or is writing)
    prev_flag: dict[str, Any] | None = None  # ... and the one before: a move a stop cut short is finished
    shadow_flag: dict[str, Any] | None = None
    previous_shadow: dict[str, Any] | None = None  # the <model>.shadow flag there before the shadow phase
    flag_retired: bool = False
    transitions: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    period: float = 0.0  # seconds between history points (grows as the rollout ages)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def step_label(self) -> str:
        if self.phase == "shadow":
            return "shadow"
        return f"step {self.step + 1} of {len(self.spec.steps)} ({self.weight}%)"

    def transition(self, state: str, now: float, by: str, reason: str, **figures: Any) -> dict[str, Any]:
        """Enter ``state`` (or record a step change in the same state); the entry is what gets audited."""
        entry = {
            "time": iso(now),
            "from": self.state,
            "state": state,
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            "by": by,
            "reason": reason,
            **figures,
        }
        self.state, self.reason, self.updated = state, reason, now
        self.transitions.append(entry)
        return entry

    def add_point(self, point: dict[str, Any], now: float, interval: float) -> None:
        if self.history and now - self.history[-1]["t"] < max(self.period, interval) * 0.999:
            return
        self.history.append(point)
        if len(self.history) > MAX_POINTS:
            self.history = self.history[::2]
            self.period = max(self.period, interval) * 2

    def to_summary(self) -> dict[str, Any]:
        """What a worker that does not lead needs to know of the rollout."""
        return {
            "id": self.id,
            "state": self.state,
            "baseline": self.spec.baseline,
            "candidate": self.spec.candidate,
            "slo_s": self.spec.latency_slo_ms / 1000.0,
            "flag_retired": self.flag_retired,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "baseline": self.spec.baseline,
            "candidate": self.spec.candidate,
            "state": self.state,
            "reason": self.reason,
            "phase": self.phase,
            "step": self.step,
            "steps": list(self.spec.steps),
            "weight": self.weight,
            "needed": self.needed,
            "started": self.started,
            "started_at": iso(self.started),
            "started_by": self.started_by,
            "updated": self.updated,
            "updated_at": iso(self.updated),
            "step_started": self.step_started,
            "waiting_since": self.waiting_since,
            "last_candidate": self.last_candidate,
            "e_value": self.judge.e_value,
            "threshold": self.judge.threshold,
            "psi": self.psi,
            "evidence": self.evidence,
            "flag": self.flag,
            "prev_flag": self.prev_flag,
            "shadow_flag": self.shadow_flag,
            "previous_shadow": self.previous_shadow,
            "flag_retired": self.flag_retired,
            "spec": self.spec.to_dict(),
            "judge": self.judge.to_dict(),
            "ledger": self.ledger.to_dict(),
            "total": self.total.to_dict(),
            "at_step": self.at_step.to_dict(),
            "transitions": self.transitions,
            "history": self.history,
            "period": self.period,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rollout:
        r = cls(
            id=d["id"],
            spec=spec_from_dict(d["spec"], f"rollout {d['id']}"),
            started=float(d["started"]),
            started_by=d.get("started_by", ""),
            judge=Judge.from_dict(d["judge"]),
        )
        for name in ("state", "reason", "phase", "started_by", "evidence", "flag", "shadow_flag"):
            setattr(r, name, d.get(name, getattr(r, name)))
        r.previous_shadow, r.prev_flag = d.get("previous_shadow"), d.get("prev_flag")
        r.flag_retired = bool(d.get("flag_retired", False))
        r.step, r.weight, r.needed = int(d["step"]), int(d["weight"]), int(d.get("needed", 0))
        for name in ("updated", "step_started", "waiting_since", "last_candidate", "period"):
            setattr(r, name, float(d.get(name) or 0.0))
        r.psi = d.get("psi")
        r.ledger = Ledger.from_dict(d.get("ledger"))
        r.total, r.at_step = Tally.from_dict(d.get("total")), Tally.from_dict(d.get("at_step"))
        r.transitions = list(d.get("transitions", []))
        r.history = list(d.get("history", []))
        return r
