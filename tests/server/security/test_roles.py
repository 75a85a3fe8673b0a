"""The role matrix: every RPC the server answers x every built-in role, called over real gRPC,
answers as the README's role table says (OK or another non-auth status where the table has a
tick, PERMISSION_DENIED where it does not); V2 streaming and tritonclient with headers included."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from ortserve._proto._pool import POOL
from ortserve.edge.auth import MODEL_FIELD, SERVER_OPEN
from ortserve.edge.methods import GROUPS, group_of
from tests.server.security.harness import ROLES, bearer, make_repo, run_app, write_auth

README = Path(__file__).resolve().parents[3] / "README.md"
DENIED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
EXTRA = ["/grpc.health.v1.Health/Check", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"]


def readme_table() -> dict[str, set[str]]:
    """group -> the built-in roles the README's table ticks."""
    text = README.read_text()
    header = re.search(r"^\| group \| RPCs \|(.*)\|$", text, re.M)
    assert header, "README has no role table"
    roles = [c.strip() for c in header.group(1).split("|")]
    table = {}
    for row in re.finditer(r"^\| ([a-z-]+) \| [^|]* \|(.*)\|$", text[header.end() :], re.M):
        cells = [c.strip() for c in row.group(2).split("|")]
        table[row.group(1)] = {role for role, cell in zip(roles, cells) if cell == "✓"}
        if row.group(1) == "reflection":
            break
    return table


def test_every_rpc_is_classified_for_model_scoped_roles():
    # an RPC names its model (checked per message), is the server's own (any grant of its group),
    # or acts on every model (needs a grant on all): a new RPC must be placed deliberately
    for method in GROUPS:
        desc = POOL.FindMethodByName(method.strip("/").replace("/", "."))
        field = MODEL_FIELD.get(method)
        if field is not None:
            assert field in desc.input_type.fields_by_name, method
    server_wide = {m.rsplit("/", 1)[1] for m in GROUPS if m not in MODEL_FIELD and m not in SERVER_OPEN}
    assert {"ListModels", "RepositoryIndex", "GetFlags", "SetFlags", "ListVersions"} <= server_wide


def _request(method: str):
    if method.startswith("/grpc.health"):
        return health_pb2.HealthCheckRequest(), health_pb2.HealthCheckResponse, False
    if method.startswith("/grpc.reflection"):
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        return req, reflection_pb2.ServerReflectionResponse, True
    desc = POOL.FindMethodByName(method.strip("/").replace("/", "."))
    req = message_factory.GetMessageClass(desc.input_type)()
    field = MODEL_FIELD.get(method)
    if field is not None:
        setattr(req, field, "spare" if "Repository" in method else "addmul")
    if method.endswith("ModelInfer") or method.endswith("ModelStreamInfer"):
        for name in ("a", "b"):
            req.inputs.add(name=name, datatype="FP32", shape=[1, 4])
            req.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    if method.endswith("SetFlags"):
        req.flags_json = '{"flags": {}}'
    response = message_factory.GetMessageClass(desc.output_type)
    return req, response, desc.client_streaming


async def call(channel: grpc.aio.Channel, method: str, metadata) -> grpc.StatusCode:
    request, response, streaming = _request(method)
    try:
        if streaming:
            stream = channel.stream_stream(method, lambda m: m.SerializeToString(), response.FromString)
            async for _ in stream(iter([request]), metadata=metadata, timeout=30):
                pass
        else:
            unary = channel.unary_unary(method, lambda m: m.SerializeToString(), response.FromString)
            await unary(request, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("models"))


def test_every_rpc_times_every_role_answers_as_the_readme_table_says(repo, tmp_path):
    table = readme_table()
    assert set(table) == {
        "inference",
        "metadata",
        "model-repository",
        "flags",
        "admin",
        "health",
        "reflection",
    }
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth)
    methods = [*GROUPS, *EXTRA]
    wrong: list[str] = []
    seen: dict[str, grpc.StatusCode] = {}

    async def body(app, target):
        async with grpc.aio.insecure_channel(target) as channel:
            for method in methods:
                assert await call(channel, method, None) == grpc.StatusCode.UNAUTHENTICATED, method
                group = group_of(method)
                for role in ROLES[:4]:
                    code = await call(channel, method, bearer(keys[role]))
                    seen[f"{method} {role}"] = code
                    allowed = role in table[group]
                    if allowed == (code in DENIED) or (
                        not allowed and code != grpc.StatusCode.PERMISSION_DENIED
                    ):
                        wrong.append(
                            f"{method} as {role}: {code.name}, table says {'OK' if allowed else 'denied'}"
                        )

    run_app(repo, body, auth_file=auth)
    assert not wrong, "\n".join(wrong)
    # the matrix really ran the RPCs: inference and control calls succeeded where allowed
    assert seen["/ortserve.v1.Inference/Predict client"] == grpc.StatusCode.INVALID_ARGUMENT  # no inputs
    assert seen["/inference.GRPCInferenceService/ModelInfer client"] == grpc.StatusCode.OK
    assert seen["/inference.GRPCInferenceService/ModelStreamInfer operator"] == grpc.StatusCode.OK
    assert seen["/inference.GRPCInferenceService/RepositoryModelUnload operator"] == grpc.StatusCode.OK
    assert seen["/ortserve.v1.Admin/SetFlags admin"] == grpc.StatusCode.OK
    assert seen["/inference.GRPCInferenceService/TraceSetting admin"] == grpc.StatusCode.UNIMPLEMENTED


def test_tritonclient_with_headers_and_a_model_scoped_stream(repo, tmp_path):
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth)

    async def body(app, target):
        import asyncio

        def with_triton() -> list:
            client = triton.InferenceServerClient(target)
            try:
                x = [triton.InferInput(n, [1, 4], "FP32") for n in ("a", "b")]
                for i in x:
                    i.set_data_from_numpy(np.ones((1, 4), np.float32))
                got = [
                    client.infer(
                        "fraud-score", x, headers={"authorization": f"Bearer {keys['fraud']}"}
                    ).as_numpy("sum")[0, 0]
                ]
                for model, key in (("addmul", keys["fraud"]), ("addmul", keys["reader"])):
                    with pytest.raises(triton.InferenceServerException) as e:
                        client.infer(model, x, headers={"x-api-key": key})
                    got.append(e.value.status())
                with pytest.raises(triton.InferenceServerException) as e:
                    client.is_server_ready()
                got.append(e.value.status())
                # a stream: checked once for the group, then each message for its model
                results: list = []
                client.start_stream(
                    lambda result, error: results.append(error or result),
                    headers={"authorization": f"Bearer {keys['fraud']}"},
                )
                client.async_stream_infer("fraud-score", x)
                client.async_stream_infer("addmul", x)
                client.stop_stream()
                got.append([type(r).__name__ for r in results])
                got.append(str(results[-1]))
                return got
            finally:
                client.close()

        got = await asyncio.to_thread(with_triton)
        assert got[:4] == [
            3.0,
            "StatusCode.PERMISSION_DENIED",
            "StatusCode.PERMISSION_DENIED",
            "StatusCode.UNAUTHENTICATED",
        ]
        assert got[4] == ["InferResult", "InferenceServerException"]
        assert "may not call ModelStreamInfer on model 'addmul'" in got[5]

    run_app(repo, body, auth_file=auth)
