"""The A/B report of a rollout (Admin ``GetRolloutReport``, ``ortserve rollout report``): per arm the
requests, error rate, rate over the latency SLO, latency quantiles, online accuracy from feedback and, for
the candidate, shadow disagreement, each rate with its 95% Wilson interval; the judge's evidence per check
and the decision; the history the PNG is drawn from. A pure function of the rollout's record, so any
worker answers it from the store."""

from __future__ import annotations

from typing import Any

from ortserve.rollout.progress import prediction_psi
from ortserve.rollout.state import ABORTED, PROGRESSING, PROMOTED, ROLLED_BACK, WAITING, Rollout, iso
from ortserve.rollout.tally import ARMS, Arm
from ortserve.stats import wilson

__all__ = ["build_report"]


def _rate(bad: int, n: int) -> dict[str, Any]:
    if n <= 0:
        return {"rate": None, "ci95": None, "n": 0}
    low, high = wilson(bad, n)
    return {"rate": bad / n, "ci95": [low, high], "n": n}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _arm(name: str, version: str, a: Arm) -> dict[str, Any]:
    out: dict[str, Any] = {
        "arm": name,
        "version": version,
        "requests": a.requests,
        "errors": a.errors,
        "error_rate": _rate(a.errors, a.requests),
        "slow": a.slow,
        "slow_rate": _rate(a.slow, a.ok),
        "latency_ms": {f"p{round(q * 100)}": _ms(a.quantile(q)) for q in (0.5, 0.9, 0.99)},
        "labelled": a.labelled,
        "accuracy": _rate(a.labelled - a.incorrect, a.labelled),
    }
    if name == "candidate" and a.compared:
        out["shadow_disagreement"] = _rate(a.disagreed, a.compared)
    return out


def _decision(r: Rollout) -> str:
    if r.state == PROGRESSING:
        return (
            f"continue at {r.step_label()}: e-value {r.judge.e_value:.3g} < {r.judge.threshold:g}, "
            f"{r.needed} more candidate requests needed"
            if r.needed
            else f"continue at {r.step_label()}: e-value {r.judge.e_value:.3g} < {r.judge.threshold:g}"
        )
    words = {
        PROMOTED: "promoted",
        ROLLED_BACK: "rolled back",
        ABORTED: "aborted",
        WAITING: "waiting for data",
    }
    return f"{words[r.state]}: {r.reason}"


def build_report(record: dict[str, Any]) -> dict[str, Any]:
    r = Rollout.from_dict(record)
    versions = {"baseline": r.spec.baseline, "candidate": r.spec.candidate}
    step = r.total.minus(r.at_step)
    return {
        "model": r.model,
        "rollout": r.id,
        "state": r.state,
        "reason": r.reason,
        "decision": _decision(r),
        "started": iso(r.started),
        "updated": iso(r.updated),
        "started_by": r.started_by,
        "step": r.step_label(),
        "weight": r.weight,
        "spec": r.spec.to_dict(),
        "variants": [_arm(name, versions[name], r.total.arms[name]) for name in ARMS],
        "current_step": {
            name: {"requests": step.arms[name].requests, "errors": step.arms[name].errors} for name in ARMS
        },
        "judge": {
            "alpha": r.judge.alpha,
            "threshold": r.judge.threshold,
            "e_value": r.judge.e_value,
            "worst": r.judge.worst(),
            "tests": r.judge.per_check(),
        },
        "prediction_psi": prediction_psi(r.total.arms["baseline"], r.total.arms["candidate"]),
        "evidence": r.evidence,
        "transitions": r.transitions,
        "history": r.history,
    }
