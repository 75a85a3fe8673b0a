"""The status page's "Rollouts" section: each model's automated rollout (the one in progress, or the last one),
read from the rollout folder (``--rollout-dir``: one ``<model>.json`` per model, ``ortserve.rollout.store``),
where the leader saves its record at every look. Read in the page's own thread, never on the event loop; under
``--workers`` the supervisor reads the same folder (as JSON: importing the rollout package would load ONNX
Runtime into the supervisor).

    state = with_rollouts(source, settings.rollout_path)   # (ortserve.ops.status.state) snapshots with them
    rollouts_section(state.rollouts, now=state.taken)      # -> HTML
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["RolloutState", "read_rollouts", "rollouts_section"]

_STATES = {  # state -> CSS class
    "progressing": "ok",
    "waiting-for-data": "warn",
    "promoted": "ok",
    "rolled-back": "bad",
    "aborted": "dim",
}


@dataclass(frozen=True)
class RolloutState:
    model: str
    id: str
    baseline: str
    candidate: str
    state: str
    phase: str  # shadow | canary
    step: str  # "shadow", or "step 2 of 3"
    weight: int  # candidate's percent of the traffic
    needed: int  # candidate requests (shadow: compared rows) the step still needs
    e_value: float  # the judge's combined evidence against the candidate
    threshold: float  # rolled back when e_value reaches it (1/alpha)
    reason: str
    updated: float  # Unix time of the record's last change of state
    started_by: str = ""


def _state(d: dict[str, Any]) -> RolloutState:
    phase = str(d.get("phase", ""))
    steps = d.get("steps") or []
    step = "shadow" if phase == "shadow" else f"step {int(d.get('step', 0)) + 1} of {len(steps)}"
    return RolloutState(
        str(d.get("model", "")),
        str(d.get("id", "")),
        str(d.get("baseline", "")),
        str(d.get("candidate", "")),
        str(d.get("state", "")),
        phase,
        step,
        int(d.get("weight", 0)),
        int(d.get("needed", 0)),
        float(d.get("e_value", 1.0)),
        float(d.get("threshold", 0.0)),
        str(d.get("reason", "")),
        float(d.get("updated", 0.0)),
        str(d.get("started_by", "")),
    )


def read_rollouts(root: Path) -> tuple[RolloutState, ...]:
    """Every model's rollout record in ``root`` (one that does not read back is left out: the controller
    logs it when it loads it)."""
    out = []
    for path in sorted(Path(root).glob("*.json")) if Path(root).is_dir() else ():
        if path.name.startswith("."):
            continue
        try:
            record = json.loads(path.read_text())
            out.append(_state(record))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return tuple(out)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - seconds))


def _evidence(r: RolloutState) -> str:
    if not r.threshold:
        return f"{r.e_value:.3g}"
    share = r.e_value / r.threshold
    kind = "bad" if share >= 1 else "warn" if share >= 0.25 else ""
    return f'<span class="{kind}">{r.e_value:.3g}</span> of {r.threshold:.3g}'


def rollouts_section(rollouts: tuple[RolloutState, ...], now: float) -> str:
    if not rollouts:
        return ""
    rows = []
    for r in rollouts:
        kind = _STATES.get(r.state, "")
        active = r.state in ("progressing", "waiting-for-data")
        where = f"{escape(r.step)} · {r.weight}%" if active else "–"
        needed = f"{r.needed:,}" if active and r.needed else "–"
        rows.append(
            f"<tr><td>{escape(r.model)}</td><td><code>{escape(r.id)}</code></td>"
            f"<td>{escape(r.baseline)} → {escape(r.candidate)}</td>"
            f'<td><span class="{kind}">{escape(r.state)}</span></td><td>{where}</td>'
            f'<td class="num">{needed}</td><td class="num">{_evidence(r)}</td>'
            f"<td>{escape(r.reason[:300])}</td><td>{_ago(now - r.updated)}</td></tr>"
        )
    head = (
        "<tr><th>model</th><th>rollout</th><th>baseline → candidate</th><th>state</th><th>step · traffic</th>"
        "<th>requests needed</th><th>evidence (rollback at)</th><th>why</th><th>changed</th></tr>"
    )
    return (
        "<section><h2>Rollouts</h2><p class=hint>automated rollouts (ortserve rollout): the one in progress or "
        "the last one per model; the evidence is the judge's combined e-value against the candidate</p>"
        f"<table>{head}{''.join(rows)}</table></section>"
    )
