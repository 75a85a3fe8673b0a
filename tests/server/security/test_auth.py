"""Principals against the real server (in process, real gRPC): API keys, JWTs, the auth file
re-read on change (a bad one refused, the last good kept), model-scoped roles, open groups."""

from __future__ import annotations

import asyncio
import os

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ortserve.client import AsyncClient, Client
from tests.server.security.certs import Issuer
from tests.server.security.harness import bearer, make_repo, run_app, sample, write_auth

A = np.ones((1, 4), np.float32)


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _sync_feedback(target: str, key: str):
    with Client(target, api_key=key) as c:
        return c.feedback("r1", labels=[0])


async def anonymous_feedback(target: str):
    async with AsyncClient(target) as c:
        return await c.feedback("r1", labels=[0])


async def details_of(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return f"{e.value.code().name}: {e.value.details()}"


def test_api_keys_unauthenticated_and_denied_before_decoding(repo, tmp_path):
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth)

    async def body(app, target):
        async with AsyncClient(target) as anonymous:
            message = await details_of(anonymous.predict("addmul", {"a": A, "b": A}))
            assert message.startswith("UNAUTHENTICATED: no credentials")
        async with AsyncClient(target, api_key="ortsk_not-a-key") as wrong:
            assert await details_of(wrong.list_models()) == "UNAUTHENTICATED: API key not recognised"
        async with AsyncClient(target, api_key=keys["client"]) as client:
            assert (await client.predict("addmul", {"a": A, "b": A}))["sum"][0, 0] == 2.0
            # x-api-key works too; a broken tensor from an unauthenticated caller is refused before decoding
            r = await client.predict("addmul", {"a": A, "b": A}, metadata=[("x-request-id", "r1")])
            assert r.request_id == "r1"
            # Feedback carries the credentials too (the sync client's from a thread: the server is on this loop)
            assert (await client.feedback("r1", labels=[0])).request_id == "r1"
            assert (await asyncio.to_thread(_sync_feedback, target, keys["client"])).request_id == "r1"
            assert (await details_of(anonymous_feedback(target))).startswith("UNAUTHENTICATED")
        async with AsyncClient(target) as raw:
            md = [("x-api-key", keys["reader"])]
            assert len((await raw.stub.ListModels(_list_request(), metadata=md)).models) == 3
            bad = _broken_predict()
            assert (await details_of(raw.stub.Predict(bad))).startswith("UNAUTHENTICATED")
            message = await details_of(raw.stub.Predict(bad, metadata=md))
            assert message == (
                "PERMISSION_DENIED: key:reader-key (roles: reader) may not call /ortserve.v1.Inference/Predict: "
                "no role grants the 'inference' group"
            )
            assert (await details_of(raw.stub.Predict(bad, metadata=bearer(keys["client"])))).startswith(
                "INVALID_ARGUMENT"
            )
            weird = [("authorization", "Basic dXNlcjpwYXNz")]
            assert "expected 'Bearer <API key or JWT>'" in await details_of(
                raw.stub.ListModels(_list_request(), metadata=weird)
            )
        reg = app.metrics.registry
        assert sample("ortserve_auth_denied_total", reg) == 0.0  # labelled: read one series
        denied = {"group": "inference", "reason": "permission_denied"}
        assert reg.get_sample_value("ortserve_auth_denied_total", denied) == 1.0

    run_app(repo, body, auth_file=auth)


def _list_request():
    from ortserve._proto.ortserve.v1 import inference_pb2 as pb

    return pb.ListModelsRequest()


def _broken_predict():
    from ortserve._proto.ortserve.v1 import inference_pb2 as pb

    bad = pb.PredictRequest(model="addmul")
    bad.inputs.add(name="a", dtype="float32", shape=[1, 4], data=b"\0" * 15)
    return bad


def test_jwt_valid_expired_wrong_audience_wrong_key_and_cached(repo, tmp_path):
    issuer, stranger = Issuer(), Issuer(kid="k1")  # the stranger signs with another key, same kid
    issuer.write_jwks(tmp_path / "jwks.json")
    auth = tmp_path / "auth.toml"
    write_auth(
        auth,
        '\n[jwt]\njwks = "jwks.json"\nissuer = "https://login.test"\naudience = "ortserve"\nleeway = 0\n',
    )

    async def body(app, target):
        async def predict(token: str) -> str:
            async with AsyncClient(target, token=token) as c:
                try:
                    await c.predict("addmul", {"a": A, "b": A})
                except grpc.aio.AioRpcError as e:
                    return f"{e.code().name}: {e.details()}"
                return "OK"

        good = issuer.token("alice", ["client"])
        assert await predict(good) == "OK"
        assert (
            await predict(issuer.token("alice", ["client"], expires_in=-5))
            == "UNAUTHENTICATED: JWT refused: expired"
        )
        assert (
            await predict(issuer.token(audience="other"))
            == "UNAUTHENTICATED: JWT refused: audience is not 'ortserve'"
        )
        assert await predict(issuer.token(issuer="https://evil.test")) == (
            "UNAUTHENTICATED: JWT refused: issuer is not 'https://login.test'"
        )
        assert await predict(stranger.token()) == (
            "UNAUTHENTICATED: JWT refused: signature does not verify with the JWKS key"
        )
        assert (await predict(issuer.token("bob", ["reader"]))).startswith(
            "PERMISSION_DENIED: jwt:bob (roles: reader)"
        )
        assert (await predict(issuer.token("eve", ["superuser"]))).startswith(
            "PERMISSION_DENIED: jwt:eve (roles: none)"
        )
        # verified once, then served from the cache by the token's digest until it expires
        verifier = app.security.policy.authenticator._jwt
        assert len(verifier._cache) == 3  # good, bob and eve verified; the refused ones are not cached
        assert await predict(good) == "OK" and len(verifier._cache) == 3

    run_app(repo, body, auth_file=auth)


def test_auth_file_reloads_and_a_bad_change_keeps_the_last_good(repo, tmp_path):
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth)

    async def wait_for(predicate, what: str) -> None:
        for _ in range(200):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def body(app, target):
        reg = app.metrics.registry
        async with AsyncClient(target, api_key=keys["client"]) as client:
            await client.list_models()
            good = auth.read_text()
            auth.write_text(good + "\n[[keys]]\nname = 'broken'\n")  # no sha256, no roles
            os.utime(auth, ns=(1, 1))
            await wait_for(
                lambda: (
                    reg.get_sample_value("ortserve_auth_file_reloads_total", {"outcome": "refused"}) == 1.0
                ),
                "the refusal",
            )
            await client.list_models()  # the last good file is still in force
            # the key's entry removed: the next call with it is refused
            auth.write_text(
                good.replace('name = "client-key"', 'name = "client-key-gone"').replace(
                    _hash_of(keys["client"]), "0" * 64
                )
            )
            await wait_for(
                lambda: reg.get_sample_value("ortserve_auth_file_reloads_total", {"outcome": "ok"}) == 2.0,
                "the reload",
            )
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await client.list_models()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    run_app(repo, body, auth_file=auth, auth_poll_interval=0.05)


def _hash_of(key: str) -> str:
    from ortserve.edge.principals import hash_key

    return hash_key(key)


def test_model_scoped_role_and_open_health(repo, tmp_path):
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth)

    async def body(app, target):
        async with AsyncClient(target, api_key=keys["fraud"]) as team:
            assert (await team.predict("fraud-score", {"a": A, "b": A}))["sum"][0, 0] == 3.0
            assert (await team.metadata("fraud-score")).name == "fraud-score"
            message = await details_of(team.predict("addmul", {"a": A, "b": A}))
            assert message == (
                "PERMISSION_DENIED: key:fraud-key may not call Predict on model 'addmul': "
                "its roles allow only models matching fraud-*"
            )
            assert "acts on every model" in await details_of(team.list_models())
        async with grpc.aio.insecure_channel(target) as channel:  # open by setting: no credentials
            status = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert status.status == health_pb2.HealthCheckResponse.SERVING

    run_app(repo, body, auth_file=auth, open_health=True)
