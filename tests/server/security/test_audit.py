"""The audit trail: control-plane calls and denials recorded by the real server, the hash chain
checked by ``ortserve audit verify`` (an edited, rewritten or deleted line is found), several
writers (as under --workers) keeping one chain, and the key changes made with ``ortserve auth``."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import sys

import grpc
import pytest

from ortserve._proto.inference import grpc_service_pb2 as v2pb
from ortserve._proto.inference import grpc_service_pb2_grpc as v2grpc
from ortserve._proto.ortserve.v1 import admin_pb2, admin_pb2_grpc
from ortserve.ops.audit import GENESIS, AuditLog, verify_chain
from tests.server.security.harness import bearer, make_repo, run_app, write_auth


def ortserve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ortserve", *args], capture_output=True, text=True, timeout=120
    )


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_control_plane_calls_and_denials_are_recorded(tmp_path):
    repo = make_repo(tmp_path / "models")
    auth, audit = tmp_path / "auth.toml", tmp_path / "audit.jsonl"
    keys = write_auth(auth)
    new_flags = json.dumps(
        {"flags": {"addmul": {"state": "ENABLED", "defaultVariant": "one", "variants": {"one": "1"}}}}
    )

    async def body(app, target):
        old_flags = app.flags.flags.text
        async with grpc.aio.insecure_channel(target) as channel:
            admin, v2 = admin_pb2_grpc.AdminStub(channel), v2grpc.GRPCInferenceServiceStub(channel)
            op = [*bearer(keys["operator"]), ("x-request-id", "change-42")]
            await admin.SetFlags(admin_pb2.SetFlagsRequest(flags_json=new_flags), metadata=op)
            await v2.RepositoryModelUnload(v2pb.RepositoryModelUnloadRequest(model_name="spare"), metadata=op)
            await v2.RepositoryModelLoad(v2pb.RepositoryModelLoadRequest(model_name="spare"), metadata=op)
            with pytest.raises(grpc.aio.AioRpcError):  # a reader may not
                await v2.RepositoryModelUnload(
                    v2pb.RepositoryModelUnloadRequest(model_name="addmul"), metadata=bearer(keys["reader"])
                )
            with pytest.raises(grpc.aio.AioRpcError):  # nobody
                await v2.ModelInfer(
                    v2pb.ModelInferRequest(model_name="addmul", model_version="1"),
                    metadata=[("x-variant", "canary")],
                )
            with pytest.raises(grpc.aio.AioRpcError):  # refused flags are recorded with their status
                await admin.SetFlags(admin_pb2.SetFlagsRequest(flags_json="{"), metadata=op)
            await v2.ServerLive(v2pb.ServerLiveRequest(), metadata=op)  # not control, not denied: no record
        app.security.audit.close()  # flush
        lines = records(audit)
        rpc = [r for r in lines if r["event"] == "rpc"]
        summary = [(r["method"].rsplit("/", 1)[1], r["principal"], r["decision"], r["status"]) for r in rpc]
        assert summary == [
            ("SetFlags", "key:operator-key", "allow", "OK"),
            ("RepositoryModelUnload", "key:operator-key", "allow", "OK"),
            ("RepositoryModelLoad", "key:operator-key", "allow", "OK"),
            ("RepositoryModelUnload", "key:reader-key", "deny", "PERMISSION_DENIED"),
            ("ModelInfer", "anonymous", "deny", "UNAUTHENTICATED"),
            ("SetFlags", "key:operator-key", "allow", "INVALID_ARGUMENT"),
        ]
        flags = rpc[0]
        assert flags["flags_sha256_old"] == hashlib.sha256(old_flags.encode()).hexdigest()
        assert flags["flags_sha256_new"] == hashlib.sha256(new_flags.encode()).hexdigest()
        assert flags["flags_changed"] == ["addmul"] and flags["request_id"] == "change-42"
        assert flags["peer"].startswith("ipv4:127.0.0.1:")
        assert rpc[1]["model"] == "spare" and rpc[3]["model"] == "addmul"
        assert (rpc[4]["model"], rpc[4]["version"], rpc[4]["variant"]) == ("addmul", "1", "canary")
        assert (rpc[1]["version"], rpc[1]["variant"]) == ("", "")
        assert "no role grants the 'model-repository' group" in rpc[3]["message"]
        assert (
            lines[0]["event"] == "auth-file"
            and lines[0]["sha256"] == hashlib.sha256(auth.read_bytes()).hexdigest()
        )

    run_app(repo, body, auth_file=auth, audit_log=audit)
    assert audit.stat().st_mode & 0o777 == 0o600
    assert verify_chain(audit).ok


def test_verify_finds_the_first_edited_rewritten_or_deleted_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write([{"event": "rpc", "n": i} for i in range(6)])
    log.close()
    good = path.read_text().splitlines(keepends=True)
    result = ortserve("audit", "verify", str(path))
    assert result.returncode == 0 and "chain intact, 6 lines" in result.stdout

    def check(lines: list[str]) -> str:
        path.write_text("".join(lines))
        result = ortserve("audit", "verify", str(path))
        assert result.returncode == 1
        return result.stderr.strip().split(": ", 1)[1]

    edited = list(good)
    edited[2] = edited[2].replace('"n":2', '"n":7')
    assert check(edited).startswith("line 3: its text does not match its hash: the line was edited")
    rewritten = list(good)  # edited and re-hashed: the next line's prev gives it away
    record = json.loads(good[2])
    from ortserve.ops.audit import seal

    line, _ = seal({k: v for k, v in record.items() if k not in ("prev", "hash")} | {"n": 7}, record["prev"])
    rewritten[2] = line.decode() + "\n"
    assert check(rewritten).startswith("line 4: its prev does not match the hash of line 3")
    assert check(good[:1] + good[2:]).startswith("line 2: its prev does not match the hash of line 1")
    assert check(good[1:]).startswith("line 1: its prev does not match the hash of the first line")


def _append(path: str, worker: int) -> None:
    log = AuditLog(path)
    for i in range(40):
        log.write([{"event": "rpc", "worker": worker, "i": i}])
    log.close()


def test_several_processes_append_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_append, args=(str(path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    report = verify_chain(path)
    assert report.ok and report.lines == 120
    assert json.loads(path.read_text().splitlines()[0])["prev"] == GENESIS


def test_queue_overflow_is_counted_and_noted(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, queue_size=2)
    log._thread = object()  # type: ignore[assignment]  # hold the writer back: nothing drains the queue
    for i in range(5):
        log.record("rpc", i=i)
    assert log._dropped == 3
    log._thread = None
    log.record("rpc", i=5)  # starts the writer: two queued records, the drop note, then this one
    log.close()
    events = [(r["event"], r.get("count")) for r in records(path)]
    assert ("dropped", 3) in events and len(events) == 4


def test_auth_cli_adds_and_removes_keys_and_audits_it(tmp_path):
    auth, audit = tmp_path / "auth.toml", tmp_path / "audit.jsonl"
    added = ortserve(
        "auth", "add-key", "ci-bot", "--role", "operator", "--auth-file", str(auth), "--audit-log", str(audit)
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("ortsk_") and len(key) > 40 and key not in auth.read_text()
    assert hashlib.sha256(key.encode()).hexdigest() in auth.read_text()
    assert auth.stat().st_mode & 0o777 == 0o600
    assert "shown only once" in added.stderr
    second = ortserve("auth", "add-key", "web", "--role", "client", "--auth-file", str(auth))
    assert second.returncode == 0 and second.stdout.strip() != key
    refused = ortserve("auth", "add-key", "x", "--role", "root", "--auth-file", str(auth))
    assert refused.returncode == 2 and "unknown role 'root'" in refused.stderr
    duplicate = ortserve("auth", "add-key", "web", "--role", "client", "--auth-file", str(auth))
    assert duplicate.returncode == 2 and "key name 'web' is used twice" in duplicate.stderr
    listed = ortserve("auth", "list", "--auth-file", str(auth))
    assert "key ci-bot: operator" in listed.stdout and "key web: client" in listed.stdout
    removed = ortserve("auth", "remove-key", "ci-bot", "--auth-file", str(auth), "--audit-log", str(audit))
    assert removed.returncode == 0, removed.stderr
    assert "ci-bot" not in auth.read_text() and "web" in auth.read_text()
    assert ortserve("auth", "check", "--auth-file", str(auth)).returncode == 0
    actions = [(r["action"], r["name"]) for r in records(audit)]
    assert actions == [("add-key", "ci-bot"), ("remove-key", "ci-bot")]
    assert verify_chain(audit).ok
