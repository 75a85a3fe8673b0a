"""The metrics port's principals beyond plain HTTP in one process: client certificates under mTLS
(``--metrics-tls`` with ``--tls-client-ca``, matched by SAN, common name and subject as the gRPC port
matches them), and the ``--workers`` supervisor's port (its own auth policy, re-read as it changes, its
denials counted with the workers' metrics and audited in the same chain)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest

from ortserve.edge.principals import new_key
from ortserve.ops.audit import verify_chain
from tests.server.security.certs import client_cert, issue, make_ca
from tests.server.security.harness import make_repo, run_app, write_auth
from tests.server.security.test_metrics_auth import fetch, key_entry

CERTIFICATES = """
[[certificates]]
name = "ingest"
san = "spiffe://acme/ingest"
roles = ["reader"]

[[certificates]]
name = "auditor"
subject = "CN=auditor,O=Acme"
roles = ["reader"]

[[certificates]]
name = "batch"
common_name = "batch"
roles = ["fraud"]
"""


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


def test_client_certificates_are_principals_on_the_metrics_port(repo, tmp_path):
    server_ca = make_ca("server CA")
    cert, key = issue(server_ca, "localhost").write(tmp_path, "server")
    (tmp_path / "server-ca.pem").write_bytes(server_ca.cert_pem)
    clients = make_ca("client CA")
    (tmp_path / "clients.pem").write_bytes(clients.cert_pem)
    pairs = {
        "ingest": client_cert(clients, "ingest", spiffe="spiffe://acme/ingest"),
        "auditor": client_cert(clients, "auditor"),
        "batch": client_cert(clients, "batch"),
        "stranger": client_cert(clients, "stranger"),
    }
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth, CERTIFICATES)

    def context(name: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "server-ca.pem"))
        ctx.load_cert_chain(*pairs[name].write(tmp_path, f"client-{name}"))
        return ctx

    async def body(app, target):
        base = f"https://127.0.0.1:{app.metrics_port}"

        async def get(path: str, who: str, **headers: str):
            return await asyncio.to_thread(fetch, base + path, headers, context(who))

        for who in ("ingest", "auditor"):  # by SAN; by subject, written as the gRPC port writes it
            status, _, text = await get("/metrics", who)
            assert status == 200 and "ortserve_requests" in text
        assert (await get("/status.json", "ingest"))[0] == 200
        status, _, text = await get("/metrics", "stranger")
        assert (status, text) == (
            401,
            "Unauthorized: client certificate 'CN=stranger,O=Acme' matches no [[certificates]] entry\n",
        )
        status, _, text = await get("/status", "batch")
        assert status == 403 and text.startswith("Forbidden: cert:batch (roles: fraud) may not read /status")
        # A header names the principal first: a scraper whose certificate the auth file does not list
        assert (await get("/metrics", "stranger", Authorization=f"Bearer {keys['reader']}"))[0] == 200
        assert (await get("/metrics", "ingest", Authorization=f"Bearer {new_key()}"))[0] == 401

    run_app(
        repo,
        body,
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=tmp_path / "clients.pem",
        metrics_tls=True,
        auth_file=auth,
        metrics_port=0,
    )


def test_the_supervisors_metrics_port_under_workers(repo, tmp_path, start_server):
    auth, audit = tmp_path / "auth.toml", tmp_path / "audit.jsonl"
    keys = write_auth(auth)
    server = start_server(
        repo,
        *("--workers", "2", "--auth-file", str(auth), "--audit-log", str(audit)),
        *("--auth-poll-interval", "0.1"),
    )
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    assert fetch(url)[0] == 401
    assert fetch(url, {"X-API-Key": keys["fraud"]})[0] == 403
    status, _, text = fetch(url, {"Authorization": f"Bearer {keys['reader']}"})
    assert status == 200 and "ortserve_model_ready{" in text  # the workers' metrics
    assert 'ortserve_auth_denied_total{group="metrics",reason="unauthenticated"} 1.0' in text
    assert 'ortserve_auth_denied_total{group="metrics",reason="permission_denied"} 1.0' in text

    late = new_key()
    auth.write_text(auth.read_text() + key_entry("late", late, "reader"))
    deadline = time.monotonic() + 30
    while fetch(url, {"Authorization": f"Bearer {late}"})[0] != 200:  # re-read as requests come
        assert time.monotonic() < deadline, "the supervisor did not pick up the new key"
        time.sleep(0.1)
    assert server.stop() == 0

    assert verify_chain(audit).ok  # the supervisor's records and the workers' in one chain
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    denied = [(r["status"], r["principal"]) for r in records if r["event"] == "http"]
    assert denied[:2] == [("401 Unauthorized", "anonymous"), ("403 Forbidden", "key:fraud-key")]
    assert {r["pid"] for r in records if r["event"] == "http"} == {server.proc.pid}
