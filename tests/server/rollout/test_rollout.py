"""Automated rollouts on the real server (in process, called over gRPC with real traffic): promotion through
every step, rollback of a worse candidate with its evidence, waiting-for-data, abort, a flag changed by
hand, bad requests."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve.client import AsyncClient
from ortserve.ops.audit import verify_chain
from ortserve.repository import load_model_config
from tests.server.rollout.harness import Traffic, admin, make_repo, row, run_app, spec, wait_state

FINAL = {"promoted", "rolled-back", "aborted"}


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


def sample(app, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_an_equivalent_candidate_is_promoted_through_every_step(repo, tmp_path):
    audit = tmp_path / "audit.jsonl"

    async def body(app, target):
        channel, stub = await admin(target)
        started = await stub.StartRollout(
            pb.StartRolloutRequest(
                model="clf", candidate="2", spec=spec(steps=[10, 40, 70]), reason="release 2"
            )
        )
        assert (started.state, started.step, started.weight, started.baseline) == ("progressing", 0, 10, "1")
        flag = json.loads(app.flags.flags.text)["flags"]["clf"]  # traffic moves through the flags document
        assert flag["targeting"] == {"fractional": [["baseline", 90], ["candidate", 10]]}
        with Traffic(target) as traffic:
            done = await wait_state(stub, FINAL)
            await asyncio.sleep(0.3)
        assert done.state == "promoted", done.reason
        record = json.loads((await stub.GetRollout(pb.GetRolloutRequest(model="clf"))).record_json)
        # every step, in order (a step may also have waited for data in between, on a busy machine)
        moves = [
            (t["state"], t["weight"]) for t in record["transitions"] if "data arrived" not in t["reason"]
        ]
        moves = [move for move in moves if move[0] != "waiting-for-data"]
        assert moves == [("progressing", 10), ("progressing", 40), ("progressing", 70), ("promoted", 100)]
        assert record["flag_retired"] and "clf" not in json.loads(app.flags.flags.text)["flags"]
        assert load_model_config(repo / "clf").default_version == "2"
        # each step really sent its share: the candidate served during the rollout, the baseline too
        variants = {variant for _, variant in traffic.served}
        assert {"baseline", "candidate"} <= variants
        async with AsyncClient(target) as client:  # after promotion: the default version, no flag
            answers = {(await client.predict("clf", {"x": row(traffic.rng)})).version for _ in range(20)}
        assert answers == {"2"}
        assert sample(app, "ortserve_rollout_state", model="clf", state="promoted") == 1.0
        assert sample(app, "ortserve_rollout_state", model="clf", state="progressing") == 0.0
        assert sample(app, "ortserve_rollout_weight", model="clf") == 100
        report = json.loads(
            (await stub.GetRolloutReport(pb.GetRolloutReportRequest(model="clf"))).report_json
        )
        assert report["decision"].startswith("promoted")
        arms = {v["arm"]: v for v in report["variants"]}
        assert arms["candidate"]["requests"] >= 3 * 20 and arms["candidate"]["errors"] == 0
        assert arms["baseline"]["error_rate"]["ci95"][0] == 0.0 and arms["baseline"]["latency_ms"]["p50"] > 0
        await channel.close()

    run_app(repo, body, audit_log=audit)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    rollout = [r for r in lines if r["event"] == "rollout"]
    moves = [r for r in rollout if r["action"] == "transition" and r["state"] != "waiting-for-data"]
    moves = [r for r in moves if "data arrived" not in r["reason"]]
    assert [(r["state"], r["weight"]) for r in moves] == [("progressing", w) for w in (10, 40, 70)] + [
        ("promoted", 100)
    ]
    assert rollout[0]["principal"].startswith("anonymous (ipv4:127.0.0.1")  # who started it
    assert "release 2" in rollout[0]["reason"]
    assert all(r["principal"] == "controller" for r in rollout[1:])  # what moved it on
    assert any(r["action"] == "flag_retired" for r in rollout)
    started = next(r for r in lines if r.get("method", "").endswith("/StartRollout"))
    assert (started["status"], started["model"], started["version"]) == ("OK", "clf", "2")
    assert verify_chain(audit).ok


def test_a_worse_candidate_is_rolled_back_with_the_evidence_recorded(repo, tmp_path):
    audit = tmp_path / "audit.jsonl"

    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(
                model="clf", candidate="3", spec=spec(steps=[20, 50], step_requests=10_000)
            )
        )
        with Traffic(target) as traffic:
            done = await wait_state(stub, FINAL)
            served_before = len(traffic.served)
            await asyncio.sleep(0.5)  # traffic goes on after the rollback: all of it to the baseline
        assert done.state == "rolled-back" and done.weight == 0
        assert "errors" in done.reason and done.e_value >= done.threshold == 20
        record = json.loads(done.record_json)
        evidence = record["evidence"]
        assert evidence["check"] == "errors" and evidence["e_value"] >= 20
        assert (
            evidence["tests"]["errors"]["candidate_events"] > evidence["tests"]["errors"]["baseline_events"]
        )
        assert evidence["total"]["candidate"]["errors"] > 0 and evidence["total"]["baseline"]["errors"] == 0
        flag = json.loads(app.flags.flags.text)["flags"]["clf"]
        assert (
            flag["state"] == "DISABLED" and flag["variants"][flag["defaultVariant"]] == "1"
        )  # the kill switch
        assert {version for version, _ in traffic.served[served_before:]} == {"1"}
        assert load_model_config(repo / "clf").default_version == "1"
        assert sample(app, "ortserve_rollout_state", model="clf", state="rolled-back") == 1.0
        assert sample(app, "ortserve_rollout_e_value", model="clf", check="errors") >= 20
        await channel.close()

    run_app(repo, body, audit_log=audit)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    (rolled,) = [r for r in records if r["event"] == "rollout" and r["state"] == "rolled-back"]
    assert rolled["principal"] == "controller" and rolled["evidence"]["check"] == "errors"
    assert rolled["evidence"]["tests"]["errors"]["candidate_events"] > 0


def test_wrong_answers_reported_by_feedback_roll_the_candidate_back(repo):
    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(model="clf", candidate="4", spec=spec(steps=[30], step_requests=10_000))
        )
        with Traffic(target, feedback=True):
            done = await wait_state(stub, FINAL)
        assert done.state == "rolled-back" and "accuracy" in done.reason, done.reason
        report = json.loads(
            (await stub.GetRolloutReport(pb.GetRolloutReportRequest(model="clf"))).report_json
        )
        arms = {v["arm"]: v for v in report["variants"]}
        assert arms["candidate"]["accuracy"]["rate"] == 0.0 and arms["baseline"]["accuracy"]["rate"] == 1.0
        assert arms["baseline"]["accuracy"]["ci95"][1] == 1.0 and arms["baseline"]["labelled"] > 0
        await channel.close()

    run_app(repo, body)


def test_a_step_without_traffic_reports_waiting_for_data_loudly(repo, caplog):
    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(
                model="clf", candidate="2", spec=spec(steps=[50], step_requests=15, idle_seconds=0.3)
            )
        )
        waiting = await wait_state(stub, {"waiting-for-data"})
        assert waiting.needed == 15 and "0 of 15 candidate requests" in waiting.reason
        assert sample(app, "ortserve_rollout_state", model="clf", state="waiting-for-data") == 1.0
        assert sample(app, "ortserve_rollout_requests_needed", model="clf") == 15
        assert any(getattr(r, "event", "") == "rollout_waiting" for r in caplog.records)
        with Traffic(target):  # data arrives: the step finishes and the candidate is promoted
            done = await wait_state(stub, FINAL)
        assert done.state == "promoted"
        states = [t["state"] for t in json.loads(done.record_json)["transitions"]]
        assert states[:2] == ["progressing", "waiting-for-data"] and states[-1] == "promoted"
        await channel.close()

    caplog.set_level("WARNING", logger="ortserve.rollout")
    run_app(repo, body, rollout_log_interval=1)


def test_waiting_past_the_deadline_rolls_back(repo):
    async def body(app, target):
        channel, stub = await admin(target)
        text = spec(steps=[50], step_requests=15, idle_seconds=0.2, deadline_seconds=0.5)
        await stub.StartRollout(pb.StartRolloutRequest(model="clf", candidate="2", spec=text))
        done = await wait_state(stub, FINAL)
        assert done.state == "rolled-back" and done.reason.startswith("no data")
        assert json.loads(done.record_json)["evidence"]["check"] == "deadline"
        await channel.close()

    run_app(repo, body)


def test_abort_returns_all_traffic_to_the_baseline_at_once(repo):
    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(model="clf", candidate="2", spec=spec(steps=[90], step_requests=10_000))
        )
        with Traffic(target) as traffic:
            await asyncio.sleep(0.3)
            aborted = await stub.AbortRollout(pb.AbortRolloutRequest(model="clf", reason="paged"))
            after = len(traffic.served)
            await asyncio.sleep(0.3)
        assert aborted.state == "aborted" and "paged" in aborted.reason and aborted.weight == 0
        assert "candidate" in {variant for _, variant in traffic.served[:after]}
        assert {version for version, _ in traffic.served[after:]} == {"1"}  # from the next request on
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.AbortRollout(pb.AbortRolloutRequest(model="clf"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "ended" in e.value.details()
        await channel.close()

    run_app(repo, body)


def test_a_flag_changed_by_hand_stops_the_rollout_without_fighting_it(repo):
    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(model="clf", candidate="2", spec=spec(steps=[10], step_requests=10_000))
        )
        mine = '{"flags": {"clf": {"state": "ENABLED", "defaultVariant": "a", "variants": {"a": "4"}}}}'
        await stub.SetFlags(pb.SetFlagsRequest(flags_json=mine))
        done = await wait_state(stub, FINAL)
        assert done.state == "aborted" and "changed outside the rollout" in done.reason
        assert json.loads(app.flags.flags.text) == json.loads(mine)  # left as the operator set it
        await channel.close()

    run_app(repo, body)


@pytest.mark.parametrize(
    "request_args, code, words",
    [
        ({"model": "clf", "candidate": "9"}, "NOT_FOUND", "no loaded version '9' (the candidate)"),
        ({"model": "clf", "candidate": "2", "baseline": "8"}, "NOT_FOUND", "(the baseline)"),
        ({"model": "nope", "candidate": "2"}, "NOT_FOUND", "model 'nope' is not loaded"),
        ({"model": "clf", "candidate": "1"}, "FAILED_PRECONDITION", "already is the default"),
        ({"model": "clf", "candidate": "2", "spec": "steps = [50, 10]"}, "INVALID_ARGUMENT", "increasing"),
        ({"model": "clf", "candidate": "2", "spec": "step_second = 1"}, "INVALID_ARGUMENT", "did you mean"),
        ({"model": "clf", "candidate": "2", "spec": "alpha = 2"}, "INVALID_ARGUMENT", "alpha"),
        ({"model": "clf", "candidate": "x"}, "INVALID_ARGUMENT", "expected a version number"),
        ({"model": "clf", "candidate": "2", "spec": "{nope"}, "INVALID_ARGUMENT", "not valid JSON or TOML"),
        ({"model": "", "candidate": "2"}, "INVALID_ARGUMENT", "model"),
        ({"model": "../clf", "candidate": "2"}, "INVALID_ARGUMENT", "not a model name"),
        ({"model": "clf", "candidate": "2\x1b[31m"}, "INVALID_ARGUMENT", "got '2\\x1b[31m'"),
    ],
)
def test_bad_starts_are_refused_with_the_reason(repo, request_args, code, words):
    async def body(app, target):
        channel, stub = await admin(target)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartRollout(pb.StartRolloutRequest(**request_args))
        assert e.value.code().name == code and words in e.value.details(), e.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.GetRollout(pb.GetRolloutRequest(model="clf"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "has no rollout" in e.value.details()
        assert json.loads(app.flags.flags.text or '{"flags": {}}')["flags"] == {}  # nothing routed
        await channel.close()

    run_app(repo, body)


def test_one_rollout_per_model_at_a_time(repo):
    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(model="clf", candidate="2", spec=spec(step_requests=10**6))
        )
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.StartRollout(pb.StartRolloutRequest(model="clf", candidate="3"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "in progress" in e.value.details()
        await stub.AbortRollout(pb.AbortRolloutRequest(model="clf"))
        again = await stub.StartRollout(pb.StartRolloutRequest(model="clf", candidate="3", spec=spec()))
        assert again.state == "progressing" and again.candidate == "3"
        assert len(list((app.settings.rollout_path / "done").glob("clf-2-*.json"))) == 1  # the first, kept
        await channel.close()

    run_app(repo, body)


def test_rollout_calls_naming_no_model_folder_are_refused_and_quote_the_name(repo):
    """The model names a file of the rollout store: a path or a huge name is refused before any file is
    touched, and a name that is only unknown is quoted (escaped, cut) in the answer."""

    async def body(app, target):
        channel, stub = await admin(target)
        for name in ("../../etc/passwd", "x" * 100_000, "a/b"):
            for call in (
                stub.GetRollout(pb.GetRolloutRequest(model=name)),
                stub.AbortRollout(pb.AbortRolloutRequest(model=name)),
                stub.GetRolloutReport(pb.GetRolloutReportRequest(model=name)),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await call
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
                assert "not a model name" in e.value.details() and len(e.value.details()) < 1000
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.GetRollout(pb.GetRolloutRequest(model="nope\x1b[2J"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "'nope\\x1b[2J'" in e.value.details()
        assert not list(app.settings.rollout_path.parent.glob("etc*"))
        await channel.close()

    run_app(repo, body)
