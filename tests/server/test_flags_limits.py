"""Flags that cannot hurt routing (issue 10, defect 3 and the 3 MB rule of defect 6): documents are
bounded in size, variants, operators and depth when they are validated; an evaluation that fails
anyway serves the flag's default variant, counted and logged once per interval."""

from __future__ import annotations

import asyncio
import json
import logging

import grpc
import numpy as np
import pytest

from ortserve._proto.ortserve.v1 import admin_pb2, admin_pb2_grpc
from ortserve.client import AsyncClient, Client
from ortserve.errors import FlagsError
from ortserve.ops.app import App
from ortserve.ops.settings import Settings
from ortserve.rollout.flags import MAX_DEPTH, MAX_OPERATORS, MAX_VARIANTS, Flag, FlagSet, parse_flags
from ortserve.rollout.router import EvaluationErrors
from tests import onnx_models as m
from tests.flags_util import metric

A = np.ones((1, 4), np.float32)


def doc(targeting=None, variants=None) -> str:
    flag = {"state": "ENABLED", "defaultVariant": "a", "variants": variants or {"a": "1", "b": "2"}}
    if targeting is not None:
        flag["targeting"] = targeting
    return json.dumps({"flags": {"addmul": flag}})


def nested_cat(depth: int) -> dict:
    """The document of the report: ``cat`` nested a few hundred deep compiled, then overflowed the
    stack on every evaluation."""
    rule: object = "a"
    for _ in range(depth):
        rule = {"cat": [rule]}
    return rule  # type: ignore[return-value]


@pytest.mark.parametrize(
    "text, reason, says",
    [
        (doc(nested_cat(400)), "depth", f"nested more than {MAX_DEPTH} levels deep"),
        (doc(nested_cat(MAX_DEPTH)), "depth", "nested more than"),
        (doc(variants={f"v{i}": "1" for i in range(1000)} | {"a": "1"}), "size", "1001 variants, at most 32"),
        (doc({"or": [{"==": [{"var": "u"}, str(i)]} for i in range(MAX_OPERATORS)]}), "size", "operators"),
        (
            doc({"if": [{"in": [{"var": "u"}, ["x" * 40] * 80_000]}, "b", "a"]}),
            "size",
            "bytes, at most 1048576",
        ),
    ],
    ids=["cat 400 deep", "just too deep", "1000 variants", "too many operators", "3 MB rule"],
)
def test_documents_over_the_bounds_are_refused_with_a_reason(text, reason, says):
    with pytest.raises(FlagsError) as e:
        parse_flags(text)
    assert e.value.reason == reason and says in str(e.value), str(e.value)


def test_documents_within_the_bounds_are_taken():
    parse_flags(doc(nested_cat(MAX_DEPTH // 2 - 4)))
    parse_flags(doc(variants={f"v{i}": "1" for i in range(MAX_VARIANTS - 1)} | {"a": "1"}))
    allow = [f"user-{i}" for i in range(20_000)]  # a literal list is one value, however long
    flags = parse_flags(doc({"if": [{"in": [{"var": "user"}, allow]}, "b", "a"]}))
    flag = flags.flags["addmul"]
    assert flag.evaluate("", {"user": "user-19999"}) == "b"
    assert flag.evaluate("", {"user": "user-20000"}) == "a"
    assert flag.evaluate("", {}) == "a"


def test_membership_in_a_literal_list_keeps_jsonlogic_semantics():
    rule = {"if": [{"in": [{"var": "x"}, [1, "two", True, None, [3], {"k": 1, "j": 2}]]}, "b", "a"]}
    flag = parse_flags(doc(rule)).flags["addmul"]
    for x, want in [("two", "b"), ("one", "a"), ("1", "a"), (None, "b")]:  # null is in the list
        assert flag.evaluate("", {"x": x} if x is not None else {}) == want, x
    flag = parse_flags(doc({"if": [{"in": [{"var": "x"}, ["a", "b"]]}, "b", "a"]})).flags["addmul"]
    assert flag.evaluate("", {"x": "b"}) == "b" and flag.evaluate("", {"x": ["b"]}) == "a"


def _boom(ctx):
    raise RecursionError("maximum recursion depth exceeded")


def test_an_evaluation_that_fails_serves_the_default_variant_and_reports_it():
    flag = Flag("addmul", True, {"a": "1", "b": "2"}, "a", _boom)
    seen = []
    assert flag.evaluate("key", {}, lambda f, e: seen.append((f.key, type(e).__name__))) == "a"
    assert seen == [("addmul", "RecursionError")]


def test_evaluation_errors_are_logged_once_per_interval(caplog):
    report = EvaluationErrors(None, interval=3600)
    flag = Flag("addmul", True, {"a": "1"}, "a", _boom)
    with caplog.at_level(logging.ERROR, logger="ortserve.flags"):
        for _ in range(100):
            report(flag, RecursionError("deep\nforged line"))
    lines = [r for r in caplog.records if r.name == "ortserve.flags"]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage()


def test_a_deep_document_sent_to_the_server_is_refused_and_routing_goes_on(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    m.publish(tmp_path, "addmul", 2, m.addmul(10.0))
    server = start_server(tmp_path)
    with grpc.insecure_channel(server.target) as ch:
        admin = admin_pb2_grpc.AdminStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            admin.SetFlags(admin_pb2.SetFlagsRequest(flags_json=doc(nested_cat(400))))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "(depth)" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            admin.SetFlags(admin_pb2.SetFlagsRequest(flags_json=" " * (2 << 20)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "(size)" in e.value.details()
    with Client(server.target) as c:
        for _ in range(5):
            assert c.predict("addmul", {"a": A, "b": A}).version == "2"
    assert metric(server, "ortserve_flags_rejected_total", reason="depth") == 1
    assert metric(server, "ortserve_flags_rejected_total", reason="size") == 1
    assert not (tmp_path / "flags.json").exists()  # nothing refused was written


def test_a_flag_whose_targeting_fails_routes_to_its_default_variant(tmp_path, caplog):
    """In process, with the real router: a rule that raises (what a document within the bounds can
    no longer do) serves the default variant, counted per flag, logged once."""
    m.publish(tmp_path, "addmul", 1, m.addmul())
    m.publish(tmp_path, "addmul", 2, m.addmul(10.0))
    settings = Settings(model_repository=tmp_path, port=0, metrics_port=-1, flags_poll_interval=0)

    async def main():
        app = App(settings)
        await app.startup()
        try:
            assert app.flags is not None
            flag = Flag("addmul", True, {"old": "1", "new": "2"}, "old", _boom)
            app.flags.router.install(FlagSet({"addmul": flag}))
            async with AsyncClient(f"127.0.0.1:{app.port}") as c:
                results = [await c.predict("addmul", {"a": A, "b": A}) for _ in range(20)]
            counted = app.metrics.flags_evaluation_errors.labels("addmul")._value.get()
            return results, counted
        finally:
            await app.shutdown()

    with caplog.at_level(logging.ERROR, logger="ortserve.flags"):
        results, counted = asyncio.run(main())
    assert {(r.version, r.variant) for r in results} == {("1", "old")}
    assert counted == 20
    assert len([r for r in caplog.records if "targeting failed" in r.getMessage()]) == 1
