"""One look at a rollout: feed the judge what the arms did since the last look, then decide whether the
step goes on, waits for data, moves forward, ends in promotion or is rolled back. Pure bookkeeping on the
``Rollout`` record; acting on the decision (flags, config, audit) is the controller's job.

Per check, the bad events and the share they are judged against (the candidate's share of the arms'
*observed* counts in the interval; see ``judge``):

    errors     requests that ended in an error       / requests (ok or error) of each arm
    latency    ok requests slower than the SLO        / ok requests
    accuracy   feedback rows whose label was wrong    / feedback rows joined to each arm
    shadow     mirrored rows whose top-1 differed (and failed mirrors) against the tolerated rate
               ``max_disagreement``: a one-sample test, only during the shadow phase
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from ortserve.errors import FailedPrecondition, ModelNotFound, quoted
from ortserve.metrics import Metrics
from ortserve.rollout.judge import Judge
from ortserve.rollout.spec import RolloutSpec
from ortserve.rollout.state import ABORTED, ROLLED_BACK, STATES, WAITING, Rollout, iso
from ortserve.rollout.tally import Arm, Tally
from ortserve.rollout.traffic import flag_of
from ortserve.stats import psi

__all__ = [
    "Decision",
    "begin",
    "check_routing",
    "evaluate",
    "export",
    "figures",
    "observe",
    "point",
    "prediction_psi",
]

MIN_PSI_ROWS = 50  # predicted classes each arm needs before the arms' PSI means anything


@dataclass
class Decision:
    action: str  # stay | wait | advance | promote | rollback
    reason: str = ""
    evidence: dict[str, Any] | None = None


def begin(
    spec: RolloutSpec, loaded: Collection[str], default: str, old: Rollout | None, by: str, now: float
) -> Rollout:
    """A new rollout of ``spec`` (its baseline: ``default`` unless the spec names one), checked against the
    versions ``loaded`` and the model's last rollout ``old``."""
    model = spec.model
    if old is not None and old.active:
        raise FailedPrecondition(
            f"model {quoted(model)} has a rollout in progress ({old.id}: {old.state}, {old.step_label()}); "
            f"abort it first (ortserve rollout abort --model {model})"
        )
    baseline = spec.baseline or default
    for role, version in (("candidate", spec.candidate), ("baseline", baseline)):
        if version not in loaded:
            raise ModelNotFound(
                f"model {quoted(model)} has no loaded version {quoted(version)} (the {role}); loaded: "
                f"{', '.join(sorted(loaded, key=int))}. A new version is loaded at the next repository "
                "scan (--poll-interval)"
            )
    if baseline == spec.candidate:
        raise FailedPrecondition(
            f"version {baseline} already is the default of {quoted(model)}: nothing to roll out"
        )
    spec = dataclasses.replace(spec, baseline=baseline)
    stamp = iso(now).replace(":", "").replace("-", "")
    r = Rollout(f"{model}-{spec.candidate}-{stamp}", spec, now, by, Judge(spec.judged, spec.alpha))
    r.updated = r.step_started = r.last_candidate = now
    if spec.shadow is not None:
        r.phase, r.step, r.weight = "shadow", -1, 0
    else:
        r.weight = spec.steps[0]
    return r


def check_routing(r: Rollout, flags_text: str, loaded: Collection[str]) -> tuple[str, str, bool] | None:
    """(state, reason, kill switch) when the rollout cannot go on: its flag was changed by someone else
    (in ``flags_text``, the document routing now), or one of its versions is no longer ``loaded``."""
    if flag_of(flags_text, r.model) != r.flag:
        reason = (
            f"the flag {quoted(r.model)} was changed outside the rollout (SetFlags or the flags file): the "
            "rollout stops and leaves routing as it is now"
        )
        return ABORTED, reason, False
    if r.spec.candidate not in loaded:
        return ROLLED_BACK, f"version {r.spec.candidate} (the candidate) is no longer loaded", True
    if r.spec.baseline not in loaded:
        return ABORTED, f"version {r.spec.baseline} (the baseline) is no longer loaded", True
    return None


def observe(r: Rollout, total: Tally, now: float) -> None:
    """Feed the judge the counts since the last look (``total`` is cumulative) and remember them."""
    delta = total.minus(r.total)
    c, b = delta.arms["candidate"], delta.arms["baseline"]
    if c.requests > 0 or c.compared > 0:
        r.last_candidate = now
    tests = r.judge.tests
    if "errors" in tests:
        _feed(r, "errors", c.errors, b.errors, c.requests, b.requests)
    if "latency" in tests:
        _feed(r, "latency", c.slow, b.slow, c.ok, b.ok)
    if "accuracy" in tests:
        _feed(r, "accuracy", c.incorrect, b.incorrect, c.labelled, b.labelled)
    shadow = r.spec.shadow
    if "shadow" in tests and r.phase == "shadow" and shadow is not None and c.compared > 0:
        bad = max(c.disagreed, 0)
        r.judge.observe("shadow", bad, max(c.compared - bad, 0), shadow.max_disagreement)
    r.total = total


def _feed(r: Rollout, check: str, bad_c: int, bad_b: int, n_c: int, n_b: int) -> None:
    n_c, n_b = max(n_c, 0), max(n_b, 0)
    if n_c + n_b > 0:
        r.judge.observe(check, max(bad_c, 0), max(bad_b, 0), n_c / (n_c + n_b))


def evaluate(r: Rollout, now: float) -> Decision:
    """What the rollout should do now (after ``observe``); sets ``r.needed`` and, at a step's end, ``r.psi``."""
    spec = r.spec
    if r.judge.rejected:
        check = r.judge.worst()
        test = r.judge.tests[check]
        reason = (
            f"the judge found the candidate worse on {check}: e-value {r.judge.e_value:.3g} >= "
            f"{r.judge.threshold:g} (1/alpha) with {test.candidate_events} bad events on the candidate and "
            f"{test.baseline_events} on the baseline"
        )
        return Decision("rollback", reason, {"check": check, **figures(r)})
    step = r.total.minus(r.at_step).arms
    if r.phase == "shadow":
        assert spec.shadow is not None
        have, need, least = step["candidate"].compared, spec.shadow.requests, spec.shadow.seconds
        what = "mirrored rows compared"
    else:
        have, need, least = step["candidate"].requests, spec.step_requests, spec.step_seconds
        what = "candidate requests"
    r.needed = max(0, need - have)
    elapsed = now - r.step_started
    if elapsed >= least and r.needed == 0:
        if r.phase == "shadow":
            return Decision("advance", f"shadow phase passed: {have} {what}, disagreement within bounds")
        r.psi = prediction_psi(step["baseline"], step["candidate"])
        limit = spec.max_prediction_psi
        if limit is not None and r.psi is not None and r.psi > limit:
            reason = f"the arms' predicted classes differ: PSI {r.psi:.3f} > {limit:g} over {r.step_label()}"
            return Decision("rollback", reason, {"check": "prediction_drift", "psi": r.psi, **figures(r)})
        done = f"{r.step_label()} passed: {have} {what} in {_secs(elapsed)}"
        if r.step + 1 < len(spec.steps):
            return Decision("advance", done)
        return Decision("promote", done + "; every step passed")
    idle = now - max(r.last_candidate, r.step_started)
    if r.needed > 0 and (idle >= spec.idle_seconds or elapsed >= least):
        if spec.deadline_seconds and r.state == WAITING and now - r.waiting_since >= spec.deadline_seconds:
            reason = f"no data: waited {_secs(now - r.waiting_since)} at {r.step_label()} ({have} of {need} {what})"
            return Decision("rollback", reason, {"check": "deadline", **figures(r)})
        reason = f"{r.step_label()}: {have} of {need} {what} in {_secs(elapsed)}, {r.needed} more needed"
        if idle >= spec.idle_seconds:
            reason += f"; no candidate traffic for {_secs(idle)}"
        return Decision("wait", reason)
    return Decision("stay")


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def prediction_psi(baseline: Arm, candidate: Arm) -> float | None:
    """PSI between the arms' predicted-class mixes (None until each has MIN_PSI_ROWS predictions)."""
    keys = sorted(set(baseline.classes) | set(candidate.classes))
    b = np.array([max(baseline.classes.get(k, 0), 0) for k in keys] + [max(baseline.other, 0)], float)
    c = np.array([max(candidate.classes.get(k, 0), 0) for k in keys] + [max(candidate.other, 0)], float)
    if b.sum() < MIN_PSI_ROWS or c.sum() < MIN_PSI_ROWS:
        return None
    return float(psi(c, b))


def _arm_figures(a: Arm) -> dict[str, Any]:
    return {
        "requests": a.requests,
        "errors": a.errors,
        "slow": a.slow,
        "ok": a.ok,
        "labelled": a.labelled,
        "incorrect": a.incorrect,
        "compared": a.compared,
        "disagreed": a.disagreed,
    }


def figures(r: Rollout) -> dict[str, Any]:
    """The numbers behind a decision: the judge's evidence per check and each arm's counts."""
    step = r.total.minus(r.at_step)
    return {
        "e_value": r.judge.e_value,
        "threshold": r.judge.threshold,
        "tests": r.judge.per_check(),
        "total": {arm: _arm_figures(a) for arm, a in r.total.arms.items()},
        "step_counts": {arm: _arm_figures(a) for arm, a in step.arms.items()},
    }


def point(r: Rollout, now: float, previous: Tally | None) -> dict[str, Any]:
    """A history point: cumulative counts per arm, latency quantiles since ``previous``, the evidence."""
    since = r.total.minus(previous) if previous is not None else None
    arms: dict[str, Any] = {}
    for name, a in r.total.arms.items():
        entry: dict[str, Any] = {
            k: getattr(a, k) for k in ("requests", "errors", "ok", "slow", "labelled", "incorrect")
        }
        if since is not None:
            recent = since.arms[name]
            entry["p50_ms"] = _ms(recent.quantile(0.5))
            entry["p99_ms"] = _ms(recent.quantile(0.99))
        arms[name] = entry
    return {
        "t": now,
        "state": r.state,
        "phase": r.phase,
        "step": r.step,
        "weight": r.weight,
        "e_value": r.judge.e_value,
        "tests": {name: t.e_value for name, t in r.judge.tests.items()},
        "arms": arms,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def export(m: Metrics, r: Rollout) -> None:
    """The rollout's metrics (set by the leader)."""
    model = r.model
    for state in STATES:
        m.rollout_state.labels(model, state).set(1.0 if state == r.state else 0.0)
    m.rollout_weight.labels(model).set(r.weight)
    m.rollout_needed.labels(model).set(r.needed if r.state == WAITING else 0)
    for check, test in r.judge.tests.items():
        m.rollout_e_value.labels(model, check).set(test.e_value)
    m.rollout_e_value.labels(model, "all").set(r.judge.e_value)
