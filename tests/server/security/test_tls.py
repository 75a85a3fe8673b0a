"""Real TLS (certificates made in the test): TLS and mTLS on the gRPC port, client certificates as
principals, certificates rotated without a restart, the plaintext health port, HTTPS metrics."""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ortserve.client import AsyncClient
from tests.server.security.certs import client_cert, issue, make_ca
from tests.server.security.harness import make_repo, run_app

A = np.ones((1, 4), np.float32)


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


@pytest.fixture
def pki(tmp_path):
    ca = make_ca("server CA")
    cert, key = issue(ca, "localhost").write(tmp_path, "server")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    return ca, cert, key, tmp_path / "ca.pem"


async def outcome(call) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code().name
    return "OK"


def test_tls_serves_only_tls_and_health_answers_in_plaintext_on_its_own_port(repo, pki):
    _ca, cert, key, ca_file = pki

    async def body(app, target):
        async with AsyncClient(target, root_certificates=ca_file) as c:
            assert (await c.predict("addmul", {"a": A, "b": A}))["sum"][0, 0] == 2.0
        async with AsyncClient(target) as plaintext:
            assert await outcome(plaintext.list_models()) == "UNAVAILABLE"
        other = make_ca("someone else")
        async with AsyncClient(target, root_certificates=other.cert_pem) as untrusting:
            assert await outcome(untrusting.list_models()) == "UNAVAILABLE"
        health_target = f"127.0.0.1:{app.security.health_port}"
        async with grpc.aio.insecure_channel(health_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert (await stub.Check(health_pb2.HealthCheckRequest())).status == 1  # SERVING
            assert (await stub.Check(health_pb2.HealthCheckRequest(service="addmul"))).status == 1
            # only health there: inference is not served on the plaintext port
            from ortserve._proto.ortserve.v1 import inference_pb2 as pb
            from ortserve._proto.ortserve.v1 import inference_pb2_grpc as pb_grpc

            assert (
                await outcome(pb_grpc.InferenceStub(channel).ListModels(pb.ListModelsRequest()))
                == "UNIMPLEMENTED"
            )

    run_app(repo, body, tls_cert=cert, tls_key=key, health_port=0)


def test_mtls_refuses_clients_without_a_certificate_and_maps_certificates_to_principals(repo, pki, tmp_path):
    _ca, cert, key, ca_file = pki
    clients = make_ca("client CA")
    (tmp_path / "clients.pem").write_bytes(clients.cert_pem)
    ingest = client_cert(clients, "ingest", spiffe="spiffe://acme/ingest")
    stranger = client_cert(clients, "stranger")
    foreign = client_cert(make_ca("not trusted"), "ingest", spiffe="spiffe://acme/ingest")
    auth = tmp_path / "auth.toml"
    auth.write_text('[[certificates]]\nname = "ingest"\nsan = "spiffe://acme/ingest"\nroles = ["client"]\n')

    async def body(app, target):
        def client(pair=None) -> AsyncClient:
            if pair is None:
                return AsyncClient(target, root_certificates=ca_file)
            return AsyncClient(
                target, root_certificates=ca_file, certificate_chain=pair.cert_pem, private_key=pair.key_pem
            )

        async with client() as c:
            assert await outcome(c.list_models()) == "UNAVAILABLE"  # no client certificate: no handshake
        async with client(foreign) as c:
            assert await outcome(c.list_models()) == "UNAVAILABLE"  # signed by a CA the server does not trust
        async with client(ingest) as c:
            assert (await c.predict("addmul", {"a": A, "b": A}))["sum"][0, 0] == 2.0
            assert await outcome(c.list_models()) == "OK"
        async with client(stranger) as c:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.list_models()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert (
                e.value.details()
                == "client certificate 'CN=stranger,O=Acme' matches no [[certificates]] entry"
            )

    run_app(repo, body, tls_cert=cert, tls_key=key, tls_client_ca=tmp_path / "clients.pem", auth_file=auth)


def test_a_rotated_certificate_is_used_by_the_next_connection_and_a_bad_one_is_refused(repo, pki, tmp_path):
    _ca, cert, key, ca_file = pki
    new_ca = make_ca("next year's CA")
    (tmp_path / "new-ca.pem").write_bytes(new_ca.cert_pem)

    async def body(app, target):
        reg = app.metrics.registry

        def reloads(outcome: str) -> float:
            return (
                reg.get_sample_value(
                    "ortserve_tls_certificate_reloads_total", {"endpoint": "grpc", "outcome": outcome}
                )
                or 0.0
            )

        async with AsyncClient(target, root_certificates=ca_file) as before:
            await before.list_models()  # a connection made with the first certificate
            async with AsyncClient(target, root_certificates=tmp_path / "new-ca.pem") as c:
                assert await outcome(c.list_models()) == "UNAVAILABLE"
            issue(new_ca, "localhost").write(tmp_path, "server")  # rotate both files in place
            os.utime(cert, ns=(10**18, 10**18))
            async with AsyncClient(target, root_certificates=tmp_path / "new-ca.pem") as after:
                assert await outcome(after.list_models()) == "OK"  # the next connection: new certificate
            assert reloads("ok") == 2.0
            assert await outcome(before.list_models()) == "OK"  # the open connection was not dropped
            # a key that does not match the certificate: refused, the last good pair keeps serving
            key.write_bytes(issue(new_ca, "localhost").key_pem)
            async with AsyncClient(target, root_certificates=tmp_path / "new-ca.pem") as again:
                assert await outcome(again.list_models()) == "OK"
            assert reloads("refused") == 1.0
            expiry = reg.get_sample_value(
                "ortserve_tls_certificate_expiry_timestamp_seconds", {"endpoint": "grpc"}
            )
            assert expiry and expiry > 0

    run_app(repo, body, tls_cert=cert, tls_key=key)


def test_metrics_over_https_with_rotation(repo, pki, tmp_path):
    _ca, cert, key, ca_file = pki
    new_ca = make_ca("next year's CA")
    (tmp_path / "new-ca.pem").write_bytes(new_ca.cert_pem)

    async def body(app, target):
        url = f"https://127.0.0.1:{app.metrics_port}/metrics"

        def fetch(trusted) -> str:
            context = ssl.create_default_context(cafile=str(trusted))
            with urllib.request.urlopen(url, context=context, timeout=30) as r:
                return r.read().decode()

        assert "ortserve_requests" in await asyncio.to_thread(fetch, ca_file)
        issue(new_ca, "localhost").write(tmp_path, "server")
        os.utime(cert, ns=(10**18, 10**18))
        page = await asyncio.to_thread(fetch, tmp_path / "new-ca.pem")  # no SNI for an IP: still rotated
        assert 'ortserve_tls_certificate_reloads_total{endpoint="metrics",outcome="ok"} 2.0' in page

        def plaintext() -> None:
            urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=30).read()

        with pytest.raises(OSError):
            await asyncio.to_thread(plaintext)

    run_app(repo, body, tls_cert=cert, tls_key=key, metrics_tls=True, metrics_port=0)


def test_the_command_refuses_an_exposed_port_without_tls_and_auth_and_serves_a_secured_one(
    repo, pki, tmp_path
):
    import subprocess
    import sys

    from ortserve.client import Client
    from ortserve.testing import ServerProcess
    from tests.server.security.harness import write_auth

    def ortserve(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "ortserve", "--model-repository", str(repo), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    exposed = ortserve("--host", "0.0.0.0", "--port", "0")
    assert exposed.returncode == 2
    assert exposed.stderr.startswith(
        "ortserve: refusing to serve gRPC on 0.0.0.0:0 without TLS (--tls-cert, --tls-key) and an --auth-file"
    )
    assert "--insecure" in exposed.stderr
    _ca, cert, key, ca_file = pki
    half = ortserve("--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key))
    assert half.returncode == 2 and "without an --auth-file" in half.stderr
    assert "go together" in ortserve("--tls-cert", str(cert)).stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[keys]]\nname = "x"\nsha256 = "abc"\nroles = ["client"]\n')
    refused = ortserve("--auth-file", str(bad), "--port", "0", "--metrics-port", "-1")
    assert refused.returncode == 2
    assert (
        "keys[0].sha256: expected the sha256 of the key as 64 lowercase hex digits, got 'abc'"
        in refused.stderr
    )

    auth = tmp_path / "auth.toml"
    keys = write_auth(auth)
    server = ServerProcess(
        repo, "--tls-cert", str(cert), "--tls-key", str(key), "--auth-file", str(auth), "--health-port", "0"
    )
    try:
        with Client(server.target, root_certificates=ca_file, api_key=keys["client"]) as c:
            assert c.predict("addmul", {"a": A, "b": A})["sum"][0, 0] == 2.0
        with grpc.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.stop() == 0
