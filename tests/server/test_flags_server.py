"""Flag routing end to end: a real server, real models (addmul versions with different offsets),
a flags file reloaded while serving, the Admin service."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import shutil

import grpc
import numpy as np
import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from ortserve._proto.ortserve.v1 import admin_pb2, admin_pb2_grpc
from ortserve.client import AsyncClient, Client
from ortserve.testing import ServerProcess
from tests import onnx_models as m
from tests.flags_util import install_flags, metric, wait_metric

CONFIG = """
default_version = "1"
max_batch_size = 16
[batching]
max_queue_delay_us = 500
max_queue_size = 1024
"""
OFFSETS = {"1": 0.0, "2": 10.0, "3": 20.0}  # version -> offset added to a + b

CANARY = {
    "flags": {
        "addmul": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "canary": "2"},
            "targeting": {"fractional": [["stable", 90], ["canary", 10]]},
        }
    }
}
A = np.arange(4, dtype=np.float32).reshape(1, 4)


def with_weights(stable: int, canary: int, state: str = "ENABLED") -> dict:
    doc = copy.deepcopy(CANARY)
    doc["flags"]["addmul"]["targeting"]["fractional"] = [["stable", stable], ["canary", canary]]
    doc["flags"]["addmul"]["state"] = state
    return doc


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    for version, offset in OFFSETS.items():
        m.publish(root, "addmul", version, m.addmul(offset), CONFIG)
    (root / "flags.json").write_text(json.dumps(CANARY))  # found without --flags
    return root


@pytest.fixture(scope="module")
def server(repo):
    s = ServerProcess(repo, "--flags-poll-interval", "0.05")
    yield s
    assert s.stop() == 0


@pytest.fixture
def flags(server, repo):
    """The flags file; put back to CANARY after each test."""
    path = repo / "flags.json"
    yield path
    with grpc.insecure_channel(server.target) as ch:
        current = admin_pb2_grpc.AdminStub(ch).GetFlags(admin_pb2.GetFlagsRequest()).flags_json
    if json.loads(current) != CANARY or json.loads(path.read_text()) != CANARY:
        install_flags(server, path, CANARY)


async def _predict_many(target: str, keys: list[str], concurrency: int = 64, **kw) -> list:
    async with AsyncClient(target) as c:
        sem = asyncio.Semaphore(concurrency)

        async def one(key: str):
            async with sem:
                return await c.predict("addmul", {"a": A, "b": A}, targeting_key=key, timeout=30, **kw)

        return await asyncio.gather(*(one(k) for k in keys))


def test_split_equals_flagd_and_is_within_bounds(server):
    keys = [f"user-{i}" for i in range(2000)]
    results = asyncio.run(_predict_many(server.target, keys))
    reference = FlagdCore()
    reference.set_flags(json.dumps(CANARY))
    canary = 0
    for key, r in zip(keys, results):
        expected = reference.resolve_string_value("addmul", "", EvaluationContext(targeting_key=key))
        assert (r.variant, r.version) == (expected.variant, expected.value), key
        np.testing.assert_array_equal(r["sum"], A * 2 + OFFSETS[r.version])  # served by that version
        canary += r.variant == "canary"
    share, sigma = canary / len(keys), math.sqrt(0.1 * 0.9 / len(keys))
    assert abs(share - 0.1) < 4 * sigma, share


def test_same_key_same_variant_and_no_key_is_random(server):
    with Client(server.target) as c:
        for key in ("alice", "bob", "carol", "user-17"):
            seen = {
                c.predict(
                    "addmul", {"a": A, "b": A}, targeting_key=key, metadata=[("country", str(i))]
                ).variant
                for i in range(15)
            }
            assert len(seen) == 1, (key, seen)
        by_metadata = c.predict("addmul", {"a": A, "b": A}, metadata=[("x-targeting-key", "user-17")]).variant
        assert by_metadata == c.predict("addmul", {"a": A, "b": A}, targeting_key="user-17").variant
    unkeyed = asyncio.run(_predict_many(server.target, [""] * 300))
    variants = [r.variant for r in unkeyed]
    assert 0 < variants.count("canary") < 90, "unkeyed requests should land in random buckets"


def test_override_picks_a_variant_by_name(server):
    with Client(server.target) as c:
        for key in ("alice", "bob", "carol"):
            r = c.predict("addmul", {"a": A, "b": A}, targeting_key=key, metadata=[("x-variant", "canary")])
            assert (r.variant, r.version) == ("canary", "2")
            np.testing.assert_array_equal(r["sum"], A * 2 + 10)
        with pytest.raises(grpc.RpcError) as e:
            c.predict("addmul", {"a": A, "b": A}, metadata=[("x-variant", "nope")])
        assert (
            e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "'nope' is not a variant" in e.value.details()
        )


def test_explicit_version_bypasses_the_flag(server):
    with Client(server.target) as c:
        for key in ("alice", "bob"):
            r = c.predict(
                "addmul", {"a": A, "b": A}, version="3", targeting_key=key, metadata=[("x-variant", "canary")]
            )
            assert (r.version, r.variant) == ("3", "")
            np.testing.assert_array_equal(r["sum"], A * 2 + 20)


def test_kill_switch_routes_everyone_to_the_default_variant(server, flags):
    install_flags(server, flags, with_weights(0, 100))
    assert {r.variant for r in asyncio.run(_predict_many(server.target, [f"k{i}" for i in range(50)]))} == {
        "canary"
    }
    install_flags(server, flags, with_weights(0, 100, state="DISABLED"))
    results = asyncio.run(_predict_many(server.target, [f"k{i}" for i in range(200)]))
    assert {(r.variant, r.version) for r in results} == {("stable", "1")}


def test_per_variant_request_metrics(server):
    asyncio.run(_predict_many(server.target, [f"metrics-{i}" for i in range(300)]))
    stable = metric(
        server, "ortserve_requests_total", model="addmul", version="1", variant="stable", outcome="ok"
    )
    canary = metric(
        server, "ortserve_requests_total", model="addmul", version="2", variant="canary", outcome="ok"
    )
    assert stable > 0 and canary > 0
    assert (
        metric(server, "ortserve_request_duration_seconds_count", model="addmul", variant="canary") == canary
    )
    with Client(server.target) as c, pytest.raises(grpc.RpcError):  # a failure counts under its variant too
        c.predict("addmul", {"a": A, "b": np.ones((2, 4), np.float32)}, metadata=[("x-variant", "canary")])
    assert (
        metric(
            server,
            "ortserve_requests_total",
            model="addmul",
            version="2",
            variant="canary",
            outcome="invalid_input",
        )
        == 1
    )


def test_reload_under_load_fails_no_request(server, flags):
    async def main():
        stop = asyncio.Event()
        failures: list[BaseException] = []
        count = 0

        async def load(c: AsyncClient, worker: int):
            nonlocal count
            i = 0
            while not stop.is_set():
                try:
                    await c.predict("addmul", {"a": A, "b": A}, targeting_key=f"w{worker}-{i}", timeout=10)
                    count += 1
                except grpc.RpcError as e:
                    failures.append(e)
                i += 1

        async with AsyncClient(server.target) as c:
            tasks = [asyncio.create_task(load(c, w)) for w in range(8)]
            for weights in [(0, 100), (100, 0), (50, 50), (0, 100), (20, 80)]:
                await asyncio.to_thread(install_flags, server, flags, with_weights(*weights))
                await asyncio.sleep(0.15)
            stop.set()
            await asyncio.gather(*tasks)
        return count, failures

    count, failures = asyncio.run(main())
    assert not failures, failures[:3]
    assert count > 50
    reference = FlagdCore()
    reference.set_flags(json.dumps(with_weights(20, 80)))
    results = asyncio.run(_predict_many(server.target, [f"after-{i}" for i in range(100)]))
    for i, r in enumerate(results):
        assert (
            r.variant
            == reference.resolve_string_value(
                "addmul", "", EvaluationContext(targeting_key=f"after-{i}")
            ).variant
        )


def _bad_operator() -> dict:
    doc = copy.deepcopy(CANARY)
    doc["flags"]["addmul"]["targeting"] = {
        "if": [{"starts_with": [{"var": "email"}, "a"]}, "canary", "stable"]
    }
    return doc


def _bad_version() -> dict:
    doc = with_weights(0, 100)
    doc["flags"]["addmul"]["variants"]["canary"] = "7"
    return doc


REFUSED = [
    ("bad json", '{"flags": {"addmul": {"state": "ENABLED",', "json"),
    ("unknown operator", _bad_operator(), "operator"),
    ("version not loaded", _bad_version(), "version"),
    ("weights not 100", with_weights(10, 80), "weights"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_invalid_flags_file_is_refused_and_last_good_flags_keep_routing(server, flags, case):
    _, doc, reason = case
    install_flags(server, flags, with_weights(0, 100))  # last good: everyone on canary
    seen = len(server.logs("flags from file refused"))  # the log is read apart from the metric
    install_flags(server, flags, doc, refused=reason)
    logged = server.wait_log("flags from file refused", after=seen)
    assert logged["reason"] == reason and logged["level"] == "error"
    results = asyncio.run(_predict_many(server.target, [f"r{i}" for i in range(40)]))
    assert {(r.variant, r.version) for r in results} == {("canary", "2")}


def test_admin_get_set_flags_and_list_versions(server, flags):
    with grpc.insecure_channel(server.target) as ch, Client(server.target) as c:
        admin = admin_pb2_grpc.AdminStub(ch)
        got = admin.GetFlags(admin_pb2.GetFlagsRequest())
        assert json.loads(got.flags_json) == CANARY and got.path == str(flags) and got.revision >= 1

        with pytest.raises(grpc.RpcError) as e:
            admin.SetFlags(admin_pb2.SetFlagsRequest(flags_json=json.dumps(_bad_version())))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "version '7'" in e.value.details()
        assert json.loads(flags.read_text()) == CANARY  # the file is untouched
        assert "version:" in admin.GetFlags(admin_pb2.GetFlagsRequest()).last_error

        mode = flags.stat().st_mode
        everyone_canary = json.dumps(with_weights(0, 100))
        revision = admin.SetFlags(admin_pb2.SetFlagsRequest(flags_json=everyone_canary)).revision
        assert revision == got.revision + 1
        # routes the very next request, and is on disk for the next start
        assert c.predict("addmul", {"a": A, "b": A}, targeting_key="alice").variant == "canary"
        assert flags.read_text() == everyone_canary and flags.stat().st_mode == mode
        assert not [p for p in flags.parent.iterdir() if p.name.startswith(".flags.json")]

        listed = admin.ListVersions(admin_pb2.ListVersionsRequest())
        (model,) = listed.models
        assert model.model == "addmul" and model.default_version == "1"
        assert [(v.version, list(v.variants)) for v in model.versions] == [
            ("1", ["addmul:stable"]),
            ("2", ["addmul:canary"]),
            ("3", []),
        ]
        assert all(len(v.sha256) == 64 for v in model.versions)


def test_flags_naming_a_version_not_yet_loaded_go_in_once_it_loads(tmp_path):
    """A version and the flags routing to it, published together: whichever poll sees its file first."""
    m.publish(tmp_path, "addmul", 1, m.addmul(0.0), CONFIG)
    server = ServerProcess(tmp_path, "--poll-interval", "0.2", "--flags-poll-interval", "0.05")
    try:
        doc = copy.deepcopy(with_weights(0, 100))
        doc["flags"]["addmul"]["variants"]["canary"] = "4"
        install_flags(server, tmp_path / "flags.json", doc, refused="version")
        with Client(server.target) as c:
            assert c.predict("addmul", {"a": A, "b": A}, targeting_key="alice").variant == ""  # no flags yet
            m.publish(tmp_path, "addmul", 4, m.addmul(40.0))
            assert wait_metric(server, "ortserve_flags_loads_total", 1, source="file") == 1
            r = c.predict("addmul", {"a": A, "b": A}, targeting_key="alice")
            assert (r.variant, r.version) == ("canary", "4")
            np.testing.assert_array_equal(r["sum"], A * 2 + 40)
    finally:
        assert server.stop() == 0


def test_a_variant_whose_version_is_removed_falls_back_to_the_default_variant(tmp_path):
    for version in ("1", "2"):
        m.publish(tmp_path, "addmul", version, m.addmul(OFFSETS[version]), CONFIG)
    (tmp_path / "flags.json").write_text(json.dumps(with_weights(50, 50)))
    server = ServerProcess(tmp_path, "--poll-interval", "0.1")
    try:
        keys = [f"user-{i}" for i in range(100)]
        assert {r.version for r in asyncio.run(_predict_many(server.target, keys))} == {"1", "2"}
        shutil.rmtree(tmp_path / "addmul" / "2")
        server.wait_log("version 2: unloaded")
        results = asyncio.run(_predict_many(server.target, keys))  # none fails
        assert {(r.variant, r.version) for r in results} == {("stable", "1")}
        with Client(server.target) as c, pytest.raises(grpc.RpcError) as e:  # asked for by name: no fallback
            c.predict("addmul", {"a": A, "b": A}, metadata=[("x-variant", "canary")])
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        assert server.stop() == 0
