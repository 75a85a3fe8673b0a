"""The rollout controller's parts on their own: tallies and their arithmetic, the ledger over worker
restarts, the judge over several checks, one look's decisions (``progress``) on made-up counts, the spec,
the store's command files, the report as text and PNG."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ortserve.errors import InvalidInput
from ortserve.rollout.judge import Judge
from ortserve.rollout.progress import begin, evaluate, observe
from ortserve.rollout.report import build_report
from ortserve.rollout.spec import parse_spec
from ortserve.rollout.state import Rollout
from ortserve.rollout.store import RolloutStore
from ortserve.rollout.tally import Arm, Ledger, Tally
from ortserve.rollout_report import plot, text


def counts(candidate: dict[str, int], baseline: dict[str, int]) -> Tally:
    t = Tally()
    for name, values in (("candidate", candidate), ("baseline", baseline)):
        for k, v in values.items():
            setattr(t.arms[name], k, v)
    return t


def rollout(text: str = "", now: float = 1000.0) -> Rollout:
    spec = parse_spec(text, {"model": "m", "candidate": "2"})
    return begin(spec, {"1", "2"}, "1", None, "test", now)


def test_latency_quantiles_come_within_a_bucket_of_the_truth():
    rng = np.random.default_rng(0)
    durations = rng.lognormal(mean=-6, sigma=1.0, size=20_000)  # around 2.5 ms
    arm = Arm()
    for d in durations:
        arm.add_request(True, float(d), bool(d > 0.01))
    for q in (0.5, 0.9, 0.99):
        got, want = arm.quantile(q), float(np.quantile(durations, q))
        assert got is not None and abs(math.log(got / want)) < math.log(1.2), (q, got, want)
    assert arm.slow == int((durations > 0.01).sum()) and arm.ok == arm.requests == 20_000
    assert Arm().quantile(0.5) is None


def test_tallies_add_up_subtract_and_survive_a_round_trip():
    a, b = Arm(), Arm()
    a.add_request(True, 0.002, False)
    a.add_request(False, 0.5, True)
    a.add_classes([1, 1, 3])
    b.add_request(True, 0.004, False)
    b.add_classes([3])
    total = Tally()
    total.arms["candidate"].merge(a)
    total.arms["candidate"].merge(b)
    c = total.arms["candidate"]
    assert (c.requests, c.errors, c.ok, c.classes) == (3, 1, 2, {1: 2, 3: 2})
    again = Tally.from_dict(total.to_dict())
    assert again.to_dict() == total.to_dict()
    step = again.minus(Tally())
    assert step.arms["candidate"].requests == 3 and step.arms["baseline"].requests == 0


def test_a_worker_that_restarts_neither_loses_nor_doubles_its_counts():
    ledger = Ledger()
    ledger.update("0", 100, counts({"requests": 10}, {"requests": 90}))
    ledger.update("1", 200, counts({"requests": 5}, {"requests": 45}))
    ledger.update("1", 200, counts({"requests": 7}, {"requests": 60}))  # the same process, later
    ledger.update("1", 300, counts({"requests": 2}, {"requests": 8}))  # restarted: counts from zero
    total = Ledger.from_dict(ledger.to_dict()).total()
    assert total.arms["candidate"].requests == 10 + 7 + 2 and total.arms["baseline"].requests == 90 + 60 + 8


def test_the_judge_over_three_equal_checks_keeps_its_false_alarm_bound():
    rng = random.Random(5)
    alarms = 0
    for _ in range(300):
        judge = Judge(("errors", "latency", "accuracy"), alpha=0.05)
        for _ in range(60):  # 60 looks at 10% traffic, a few bad events each, all landing as traffic does
            for check in judge.tests:
                bad = rng.randint(0, 4)
                on_candidate = sum(rng.random() < 0.1 for _ in range(bad))
                judge.observe(check, on_candidate, bad - on_candidate, 0.1)
            if judge.rejected:
                alarms += 1
                break
    assert alarms / 300 <= 0.05 + 0.04  # alpha, up to sampling error (3 sigma at 300 runs)


def test_one_bad_check_is_enough_and_is_named():
    judge = Judge(("errors", "latency"), alpha=0.05)
    for _ in range(10):
        judge.observe("errors", 3, 3, 0.1)
        judge.observe("latency", 1, 9, 0.1)
    assert judge.rejected and judge.worst() == "errors"
    assert Judge.from_dict(judge.to_dict()).e_value == pytest.approx(judge.e_value)


def test_a_look_advances_waits_promotes_and_rolls_back():
    r = rollout("steps = [10, 50]\nstep_seconds = 10\nstep_requests = 100\nidle_seconds = 5")
    observe(r, counts({"requests": 40, "ok": 40}, {"requests": 360, "ok": 360}), 1004)
    assert evaluate(r, 1004).action == "stay" and r.needed == 60
    assert evaluate(r, 1011).action == "wait"  # time is up, requests are not
    observe(r, counts({"requests": 100, "ok": 100}, {"requests": 900, "ok": 900}), 1012)
    assert evaluate(r, 1012).action == "advance"
    r.step, r.weight, r.at_step, r.step_started = 1, 50, r.total.copy(), 1012
    idle = evaluate(r, 1018)  # no candidate request for 6 s: waiting, loudly
    assert idle.action == "wait" and "no candidate traffic" in idle.reason
    observe(r, counts({"requests": 250, "ok": 250}, {"requests": 1050, "ok": 1050}), 1025)
    assert evaluate(r, 1025).action == "promote"
    observe(r, counts({"requests": 300, "errors": 20, "ok": 280}, {"requests": 1100, "ok": 1100}), 1026)
    d = evaluate(r, 1026)
    assert d.action == "rollback" and d.evidence is not None and d.evidence["check"] == "errors"


def test_the_prediction_psi_gate_fails_a_step_that_predicts_other_classes():
    r = rollout("steps = [50]\nstep_seconds = 0\nstep_requests = 10\nmax_prediction_psi = 0.1")
    t = counts({"requests": 100, "ok": 100}, {"requests": 100, "ok": 100})
    t.arms["candidate"].classes = {0: 90, 1: 10}
    t.arms["baseline"].classes = {0: 50, 1: 50}
    observe(r, t, 1001)
    d = evaluate(r, 1001)
    assert d.action == "rollback" and "PSI" in d.reason and r.psi is not None and r.psi > 0.1


def test_the_shadow_phase_judges_disagreement_against_the_tolerated_rate():
    r = rollout("[shadow]\nrequests = 50\nmax_disagreement = 0.02")
    assert (r.phase, r.weight, r.step) == ("shadow", 0, -1)
    observe(r, counts({"compared": 60, "disagreed": 1}, {}), 1001)
    assert evaluate(r, 1001).action == "advance"
    worse = rollout("[shadow]\nrequests = 1000\nmax_disagreement = 0.02")
    observe(worse, counts({"compared": 200, "disagreed": 30}, {}), 1001)
    d = evaluate(worse, 1001)
    assert d.action == "rollback" and "shadow" in d.reason


def test_spec_defaults_and_refusals():
    s = parse_spec('model = "m"\ncandidate = 3')
    assert (s.candidate, s.steps, s.judged) == ("3", (5, 25, 50), ("errors", "latency", "accuracy"))
    assert parse_spec('{"model": "m", "candidate": "3", "alpha": null}').alpha == 0.05
    for bad, words in [
        ('model = "m"\ncandidate = "3"\nbaseline = "3"', "both version 3"),
        ('model = "m"\ncandidate = "3"\nchecks = ["errors", "errors"]', "each check once"),
        ('model = "m"\ncandidate = "3"\n[shadow]\npercent = 0', "[shadow] percent"),
        ('model = "m"', "candidate"),
    ]:
        with pytest.raises(InvalidInput, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_spec(bad)


def test_commands_and_replies_between_workers_go_through_files(tmp_path):
    store = RolloutStore(tmp_path / ".rollouts")
    cid = store.put_command({"op": "abort", "model": "m"})
    assert store.take_reply(cid) is None
    (taken,) = store.take_commands()
    assert taken["op"] == "abort" and taken["id"] == cid and store.take_commands() == []
    store.reply(cid, {"ok": True, "record": {}})
    assert store.take_reply(cid) == {"ok": True, "record": {}} and store.take_reply(cid) is None
    store.write_tally("m", "1", {"rollout": "x"})
    store.write_tally("m.v2", "1", {"rollout": "y"})  # another model whose name starts the same
    assert [t["rollout"] for t in store.read_tallies("m")] == ["x"]


def test_the_report_reads_as_text_and_draws_a_png(tmp_path):
    r = rollout("steps = [20]")
    now = 1000.0
    for i in range(1, 30):
        t = counts(
            {"requests": 20 * i, "errors": i // 3, "ok": 20 * i - i // 3, "labelled": 10 * i, "incorrect": i},
            {"requests": 80 * i, "errors": 0, "ok": 80 * i, "labelled": 40 * i, "incorrect": 2 * i},
        )
        t.arms["candidate"].latency[20] = 20 * i
        observe(r, t, now + i)
        r.add_point({"t": now + i, "state": r.state, "phase": r.phase, "step": 0, "weight": 20,
                     "e_value": r.judge.e_value, "tests": {}, "arms": {
                         a: {**{k: getattr(t.arms[a], k) for k in ("requests", "errors", "ok", "slow", "labelled", "incorrect")},
                             "p50_ms": 1.0, "p99_ms": 3.0} for a in ("baseline", "candidate")}}, now + i, 0.5)  # fmt: skip
    report = build_report(r.to_dict())
    arms = {v["arm"]: v for v in report["variants"]}
    assert arms["candidate"]["errors"] == 9 and arms["baseline"]["accuracy"]["rate"] == pytest.approx(0.95)
    low, high = arms["candidate"]["error_rate"]["ci95"]
    assert low < 9 / 580 < high
    out = text(report)
    assert "baseline" in out and "error rate (95% CI)" in out and "judge: e-value" in out
    png = tmp_path / "r.png"
    plot(report, png)
    assert png.read_bytes()[:4] == b"\x89PNG"
