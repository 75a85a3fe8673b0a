"""Rollouts under ``--workers``: worker 0 leads, the others count their share and answer the Admin calls.
Two workers in one process (``App(worker=0)`` and ``App(worker=1)`` over one repository, each on its own
port) make the follower's path deterministic; the real supervisor runs it end to end."""

from __future__ import annotations

import asyncio
import json
import random
import time

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve.admin_client import AdminClient
from ortserve.client import Client
from ortserve.ops.app import App
from ortserve.repository import load_model_config
from tests.server.rollout.harness import Traffic, admin, make_repo, row, settings, spec, wait_state


def test_a_follower_counts_its_share_and_hands_starts_and_aborts_to_the_leader(tmp_path):
    repo = make_repo(tmp_path / "models")

    async def main() -> None:
        s = settings(repo, workers=2)
        leader, follower = App(s, worker=0), App(s, worker=1)
        await leader.startup()
        await follower.startup()
        try:
            target = f"127.0.0.1:{follower.port}"
            channel, stub = await admin(target)
            # a start through the follower is carried out by the leader
            started = await stub.StartRollout(pb.StartRolloutRequest(model="clf", candidate="2", spec=spec()))
            assert started.state == "progressing" and started.weight == 5
            assert leader.rollouts is not None and (await leader.rollouts.get("clf"))["id"] == started.id
            with Traffic(
                target
            ):  # every request reaches the follower only: the leader sees them in its files
                done = await wait_state(stub, {"promoted", "rolled-back", "aborted"})
                await asyncio.sleep(1.0)
            assert done.state == "promoted", done.reason
            record = await leader.rollouts.get("clf")
            assert "1" in record["ledger"]["seen"] and record["total"]["candidate"]["requests"] >= 3 * 20
            assert leader.models is not None and follower.models is not None
            assert load_model_config(repo / "clf").default_version == "2"
            assert follower.models.default_version("clf") == "2" == leader.models.default_version("clf")
            assert record["flag_retired"]  # retired once the follower serves version 2 by default
            # an abort through the follower, too
            await stub.StartRollout(
                pb.StartRolloutRequest(model="clf", candidate="3", spec=spec(step_requests=10**6))
            )
            aborted = await stub.AbortRollout(pb.AbortRolloutRequest(model="clf", reason="from worker 1"))
            assert aborted.state == "aborted" and "from worker 1" in aborted.reason
            flag = json.loads(leader.flags.flags.text)["flags"]["clf"] if leader.flags else {}
            assert flag["state"] == "DISABLED"
            await channel.close()
        finally:
            await follower.shutdown()
            await leader.shutdown()

    asyncio.run(main())


def test_rollout_promoted_under_the_workers_supervisor(tmp_path, start_server):
    repo = make_repo(tmp_path / "models")
    server = start_server(
        repo,
        "--workers",
        "2",
        "--rollout-interval",
        "0.1",
        "--flags-poll-interval",
        "0.2",
        "--drift-sample-rate",
        "0",
    )
    rng = random.Random(3)
    with AdminClient(server.target) as admin_client:
        started = admin_client.start_rollout("clf", "2", spec=spec(steps=[20, 60]))
        assert started.state == "progressing"
        for _ in range(3000):
            with Client(server.target) as client:  # new connections: the kernel spreads them over the workers
                for _ in range(5):
                    client.predict("clf", {"x": row(rng)}, targeting_key=f"k{rng.random()}")
            status = admin_client.get_rollout("clf")
            if status.state not in ("progressing", "waiting-for-data"):
                break
        assert status.state == "promoted", status.reason
    deadline = (
        time.monotonic() + 60
    )  # every worker must report the promoted flag first: generous on a busy machine
    while not json.loads(status.record_json)["flag_retired"] and time.monotonic() < deadline:
        time.sleep(0.1)
        with AdminClient(server.target) as admin_client:
            status = admin_client.get_rollout("clf")
    assert json.loads(status.record_json)["flag_retired"]
    with Client(server.target) as client:
        served = [client.predict("clf", {"x": row(rng)}).version for _ in range(10)]
        assert set(served) == {"2"}, (served, [l.get("message") for l in server.lines][-30:])
    assert server.stop() == 0
