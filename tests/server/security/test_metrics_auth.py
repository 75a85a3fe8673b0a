"""The metrics port (``/metrics``, the status page) against the auth file's principals, on the real server in
process with real HTTP requests over loopback: 401 without or with bad credentials, 403 without a grant of
the ``metrics`` group, 200 for API keys (Bearer, X-API-Key, Basic) and JWTs whose roles grant it; a reloaded
auth file; denials counted and audited; ``--open-metrics``; no auth file, no change."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request

import grpc
import pytest

from ortserve.client import AsyncClient
from ortserve.edge.principals import hash_key, new_key
from ortserve.ops.audit import verify_chain
from tests.server.security.certs import Issuer
from tests.server.security.harness import make_repo, run_app, write_auth

NO_CREDENTIALS = (
    "Unauthorized: no credentials: send 'Authorization: Bearer <API key or JWT>' or 'X-API-Key: <key>' "
    "(or Basic with the key as the password)\n"
)
CHALLENGES = ['Bearer realm="ortserve"', 'Basic realm="ortserve", charset="UTF-8"']


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "models")


def fetch(url: str, headers: dict[str, str] | None = None, context=None):
    """(status, headers, body) of a GET, whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def key_entry(name: str, key: str, role: str) -> str:
    return f'\n[[keys]]\nname = "{name}"\nsha256 = "{hash_key(key)}"\nroles = ["{role}"]\n'


def getter(app):
    base = f"http://127.0.0.1:{app.metrics_port}"

    async def get(path: str, **headers: str):
        return await asyncio.to_thread(fetch, base + path, headers)  # the server's loop is this thread's

    return get


def denied(app, reason: str) -> float:
    labels = {"group": "metrics", "reason": reason}
    return app.metrics.registry.get_sample_value("ortserve_auth_denied_total", labels) or 0.0


def test_the_metrics_port_answers_only_principals_whose_roles_grant_metrics(repo, tmp_path):
    auth, audit = tmp_path / "auth.toml", tmp_path / "audit.jsonl"
    scraper, scoped, wrong = new_key(), new_key(), new_key()
    extra = '\n[roles.scraper]\nmetrics = ["*"]\n\n[roles.scoped]\nmetrics = ["fraud-*"]\n'
    keys = write_auth(
        auth, extra + key_entry("scraper", scraper, "scraper") + key_entry("scoped", scoped, "scoped")
    )

    async def body(app, target):
        get = getter(app)
        status, headers, text = await get("/metrics")
        assert (status, text) == (401, NO_CREDENTIALS)
        # Bearer for scrapers and tools; Basic makes a browser ask for a user name and password (the key)
        assert headers.get_all("WWW-Authenticate") == CHALLENGES
        for path in ("/", "/status", "/status.json", "/nope"):  # the whole port, before any routing
            assert (await get(path))[0] == 401
        status, headers, text = await get("/metrics", Authorization=f"Bearer {wrong}")
        assert (status, text) == (401, "Unauthorized: API key not recognised\n")
        assert headers["WWW-Authenticate"] == 'Bearer realm="ortserve", error="invalid_token"'
        status, _, text = await get("/metrics", Authorization=f"Token {keys['reader']}")
        assert status == 401 and "expected 'Bearer <API key or JWT>'" in text and keys["reader"] not in text
        assert denied(app, "unauthenticated") == 7.0 and denied(app, "permission_denied") == 0.0

        status, headers, text = await get("/status", **{"X-API-Key": keys["fraud"]})
        assert status == 403 and "Basic" not in str(headers.get_all("WWW-Authenticate"))
        assert text == (
            "Forbidden: key:fraud-key (roles: fraud) may not read /status: no role grants the 'metrics' group\n"
        )
        status, _, text = await get("/metrics", Authorization=f"Bearer {scoped}")
        assert status == 403 and "only of models matching fraud-*" in text and "on all models" in text
        assert denied(app, "permission_denied") == 2.0

        # Every built-in role grants it; a role of its own can grant it and nothing else.
        status, headers, text = await get("/metrics", Authorization=f"Bearer {keys['reader']}")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'ortserve_auth_denied_total{group="metrics",reason="unauthenticated"} 7.0' in text
        assert 'ortserve_auth_denied_total{group="metrics",reason="permission_denied"} 2.0' in text
        for path in ("/", "/status"):
            status, headers, text = await get(path, Authorization=f"Bearer {keys['reader']}")
            assert status == 200 and "text/html" in headers["Content-Type"] and "addmul" in text
        status, _, text = await get("/status.json", **{"X-API-Key": keys["client"]})
        assert status == 200 and "addmul" in {m["name"] for m in json.loads(text)["state"]["models"]}
        basic = base64.b64encode(f"whoever:{keys['operator']}".encode()).decode()
        assert (await get("/status", Authorization=f"Basic {basic}"))[0] == 200
        assert (await get("/metrics", Authorization=f"Bearer {keys['admin']}"))[0] == 200
        assert (await get("/metrics", Authorization=f"Bearer {scraper}"))[0] == 200
        async with AsyncClient(target, api_key=scraper) as c:  # a scrape key is no gRPC key
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.list_models()
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert denied(app, "unauthenticated") == 7.0  # the allowed requests counted nothing

    run_app(repo, body, auth_file=auth, audit_log=audit, metrics_port=0)

    text = audit.read_text()
    assert verify_chain(audit).ok and wrong not in text and keys["reader"] not in text
    records = [r for r in map(json.loads, text.splitlines()) if r["event"] == "http"]
    assert len(records) == 9
    first = records[0]
    assert {k: first[k] for k in ("method", "group", "principal", "decision", "status", "message")} == {
        "method": "GET /metrics",
        "group": "metrics",
        "principal": "anonymous",
        "decision": "deny",
        "status": "401 Unauthorized",
        "message": NO_CREDENTIALS.removeprefix("Unauthorized: ").strip(),
    }
    assert first["peer"].startswith("ipv4:127.0.0.1:") and first["request_id"]
    forbidden = [r for r in records if r["status"] == "403 Forbidden"]
    assert [(r["principal"], r["method"]) for r in forbidden] == [
        ("key:fraud-key", "GET /status"),
        ("key:scoped", "GET /metrics"),
    ]


def test_jwts_and_a_reloaded_auth_file_on_the_metrics_port(repo, tmp_path):
    issuer = Issuer()
    issuer.write_jwks(tmp_path / "jwks.json")
    jwt_section = f'\n[jwt]\njwks = "jwks.json"\nissuer = "{issuer.url}"\naudience = "ortserve"\n'
    auth = tmp_path / "auth.toml"
    keys = write_auth(auth, jwt_section)
    late = new_key()

    async def status_of(get, credential: str) -> int:
        return (await get("/metrics", Authorization=f"Bearer {credential}"))[0]

    async def until(get, credential: str, wanted: int) -> None:
        for _ in range(300):  # the server re-reads the file every 0.1 s: wait for it, however busy
            if await status_of(get, credential) == wanted:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"still not {wanted}")

    async def body(app, target):
        get = getter(app)
        assert await status_of(get, issuer.token(roles=["reader"])) == 200
        assert await status_of(get, issuer.token("bob", roles=["client"])) == 200
        status, _, text = await get("/status.json", Authorization=f"Bearer {issuer.token(roles=[])}")
        assert status == 403 and text.startswith(
            "Forbidden: jwt:alice (roles: none) may not read /status.json"
        )
        status, _, text = await get("/metrics", Authorization=f"Bearer {issuer.token(expires_in=-120)}")
        assert (status, text) == (401, "Unauthorized: JWT refused: expired\n")
        token = issuer.token(audience="someone-else")
        assert (await get("/metrics", Authorization=f"Bearer {token}"))[2].endswith(
            "audience is not 'ortserve'\n"
        )

        assert await status_of(get, late) == 401
        auth.write_text(auth.read_text() + key_entry("late", late, "reader"))  # added: works once re-read
        await until(get, late, 200)
        text = auth.read_text()
        start = text.index('[[keys]]\nname = "reader-key"')
        auth.write_text(text[:start] + text[text.index("[[keys]]", start + 1) :])  # removed: refused
        await until(get, keys["reader"], 401)
        assert await status_of(get, keys["client"]) == 200

    run_app(repo, body, auth_file=auth, metrics_port=0, auth_poll_interval=0.1)


def test_open_metrics_leaves_the_port_open_and_the_grpc_port_closed(repo, tmp_path):
    auth = tmp_path / "auth.toml"
    write_auth(auth)

    async def body(app, target):
        get = getter(app)
        for path in ("/metrics", "/status", "/status.json"):
            assert (await get(path))[0] == 200
        assert (await get("/metrics", Authorization="Bearer not-checked"))[0] == 200
        async with AsyncClient(target) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await anonymous.list_models()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    run_app(repo, body, auth_file=auth, open_metrics=True, metrics_port=0)


def test_without_an_auth_file_the_port_is_as_before(repo):
    async def body(app, target):
        get = getter(app)
        status, headers, text = await get("/metrics")
        assert status == 200 and "WWW-Authenticate" not in headers and "ortserve_requests" in text
        assert (await get("/status"))[0] == 200 and (await get("/nope"))[0] == 404

    run_app(repo, body, metrics_port=0)
