"""A shadow phase before any user sees the candidate (real mirrored traffic), and a move a stop cut short
(the record written, the flags not yet) finished at the next start."""

from __future__ import annotations

import json
import shutil

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve.repository.flagsdoc import canary_flag
from tests.server.rollout.harness import Traffic, admin, make_repo, run_app, spec, wait_state

FINAL = {"promoted", "rolled-back", "aborted"}


def test_a_candidate_that_disagrees_in_the_shadow_never_serves_a_user(tmp_path):
    repo = make_repo(tmp_path / "models")
    previous = {"state": "ENABLED", "defaultVariant": "off", "variants": {"off": "", "v2": "2"}}
    (repo / "flags.json").write_text(json.dumps({"flags": {"clf.shadow": previous}}))

    async def body(app, target):
        channel, stub = await admin(target)
        text = spec(steps=[50], shadow={"requests": 10_000, "max_disagreement": 0.05})
        started = await stub.StartRollout(pb.StartRolloutRequest(model="clf", candidate="4", spec=text))
        assert (started.phase, started.weight, started.step) == ("shadow", 0, -1)
        mirror = json.loads(app.flags.flags.text)["flags"]["clf.shadow"]
        assert mirror["variants"]["candidate"] == "4" and mirror["defaultVariant"] == "candidate"
        with Traffic(target) as traffic:
            done = await wait_state(stub, FINAL)
        assert done.state == "rolled-back" and "shadow" in done.reason, done.reason
        assert {version for version, _ in traffic.served} == {"1"}  # no user was answered by version 4
        flags = json.loads(app.flags.flags.text)["flags"]
        assert flags["clf.shadow"] == previous  # the shadow flag that was there before is back
        report = json.loads(
            (await stub.GetRolloutReport(pb.GetRolloutReportRequest(model="clf"))).report_json
        )
        candidate = next(v for v in report["variants"] if v["arm"] == "candidate")
        assert candidate["requests"] == 0 and candidate["shadow_disagreement"]["rate"] > 0.9
        await channel.close()

    run_app(repo, body)


def test_an_equivalent_candidate_passes_the_shadow_then_the_steps(tmp_path):
    repo = make_repo(tmp_path / "models")

    async def body(app, target):
        channel, stub = await admin(target)
        text = spec(steps=[30], shadow={"requests": 30, "percent": 50})
        await stub.StartRollout(pb.StartRolloutRequest(model="clf", candidate="2", spec=text))
        with Traffic(target):
            done = await wait_state(stub, FINAL)
        assert done.state == "promoted", done.reason
        reasons = [t["reason"] for t in json.loads(done.record_json)["transitions"]]
        assert any("shadow phase passed" in r for r in reasons)
        assert "clf.shadow" not in json.loads(app.flags.flags.text)["flags"]
        await channel.close()

    run_app(repo, body)


def test_a_move_cut_short_between_the_record_and_the_flags_is_finished_at_start(tmp_path):
    repo = make_repo(tmp_path / "models")
    ids = []

    async def first(app, target):
        channel, stub = await admin(target)
        started = await stub.StartRollout(
            pb.StartRolloutRequest(model="clf", candidate="2", spec=spec(steps=[10, 50], step_requests=10**6))
        )
        ids.append(started.id)
        await channel.close()

    run_app(repo, first)
    # as if the server died after saving "step 2, flag at 50%" and before writing flags.json
    path = repo / ".rollouts" / "clf.json"
    record = json.loads(path.read_text())
    step_two = canary_flag("1", "2", 50, stable_variant="baseline", candidate_variant="candidate")
    record.update(step=1, weight=50, prev_flag=record["flag"], flag=step_two)
    path.write_text(json.dumps(record))

    async def second(app, target):
        channel, stub = await admin(target)
        status = await stub.GetRollout(pb.GetRolloutRequest(model="clf"))
        assert (status.id, status.step, status.weight) == (ids[0], 1, 50)
        assert json.loads(app.flags.flags.text)["flags"]["clf"] == step_two  # the move was finished
        await wait_state(stub, {"progressing", "waiting-for-data"})
        assert (await stub.GetRollout(pb.GetRolloutRequest(model="clf"))).state != "aborted"
        await channel.close()

    run_app(repo, second)


def test_the_kill_switch_is_not_blocked_by_another_flag_naming_a_version_gone_since(tmp_path):
    repo = make_repo(tmp_path / "models")
    stale = {"state": "ENABLED", "defaultVariant": "v4", "variants": {"v4": "4"}}
    (repo / "flags.json").write_text(json.dumps({"flags": {"clf.shadow": stale}}))

    async def body(app, target):
        channel, stub = await admin(target)
        await stub.StartRollout(
            pb.StartRolloutRequest(model="clf", candidate="3", spec=spec(steps=[50], step_requests=10**6))
        )
        shutil.rmtree(repo / "clf" / "4")  # version 4 goes: the shadow flag now names a version not loaded
        await app.models.sync()
        with Traffic(target):
            done = await wait_state(stub, FINAL)
        assert done.state == "rolled-back" and "could not be written" not in done.reason
        flags = json.loads(app.flags.flags.text)["flags"]
        assert flags["clf"]["state"] == "DISABLED" and flags["clf.shadow"] == stale
        await channel.close()

    run_app(repo, body)
