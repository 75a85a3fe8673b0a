"""Bounded metric labels (issue 10, defect 4): label values come only from what is loaded and the
flags in force; the series of versions and variants that go away are removed, in one process and
under --workers (where the supervisor leaves them out)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ortserve._proto.ortserve.v1 import admin_pb2, admin_pb2_grpc
from ortserve.client import Client
from tests import onnx_models as m
from tests.flags_util import install_flags

A = np.ones((1, 4), np.float32)


def flag(variants: dict[str, str], default: str) -> dict:
    return {"flags": {"addmul": {"state": "ENABLED", "defaultVariant": default, "variants": variants}}}


def series(server) -> list[tuple[str, dict]]:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    return [(s.name, s.labels) for f in text_string_to_metric_families(text) for s in f.samples]


def label_values(server, label: str, model: str = "addmul") -> set[str]:
    return {labels[label] for _, labels in series(server) if label in labels and labels.get("model") == model}


def wait_until(check, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.1)


def predict_variants(server, variants) -> None:
    with Client(server.target) as c:
        for v in variants:
            c.predict("addmul", {"a": A, "b": A}, metadata=[("x-variant", v)])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_series_of_variants_and_versions_that_go_away_are_removed(tmp_path, start_server, workers):
    for version in ("1", "2", "3"):
        m.publish(tmp_path, "addmul", version, m.addmul(float(version)))
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(flag({"a": "1", "b": "2"}, "a")))
    server = start_server(
        tmp_path, "--workers", workers, "--poll-interval", "0.2", "--flags-poll-interval", "0.1"
    )
    for _ in range(int(workers)):  # new connections: each worker serves some
        predict_variants(server, ["a", "b"])
    assert label_values(server, "variant") == {"a", "b"}
    assert label_values(server, "version") >= {"1", "2", "3"}

    if workers == "1":
        install_flags(server, flags, flag({"c": "3", "d": "1"}, "c"))
    else:  # every worker reloads the file; the supervisor's view follows the last of them
        flags.write_text(json.dumps(flag({"c": "3", "d": "1"}, "c")))
        time.sleep(1.0)
    for _ in range(int(workers)):
        predict_variants(server, ["c", "d"])
    wait_until(lambda: label_values(server, "variant") == {"c", "d"})

    shutil.rmtree(tmp_path / "addmul" / "2")
    wait_until(lambda: "2" not in label_values(server, "version"))
    assert label_values(server, "version") == {"1", "3"}  # 1 and 3 serve (variants c, d)
    if workers == "1":
        assert server.stop() == 0


def test_a_flag_with_too_many_variants_is_refused_and_grows_nothing(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    server = start_server(tmp_path)
    with Client(server.target) as c:
        c.predict("addmul", {"a": A, "b": A})
        with pytest.raises(grpc.RpcError):
            c.predict("model-x", {"a": A, "b": A})
    before = len(urllib.request.urlopen(server.metrics_url, timeout=5).read())
    doc = flag({f"v{i}": "1" for i in range(1000)}, "v0")
    with grpc.insecure_channel(server.target) as ch, pytest.raises(grpc.RpcError) as e:
        admin_pb2_grpc.AdminStub(ch).SetFlags(admin_pb2.SetFlagsRequest(flags_json=json.dumps(doc)))
    assert (
        e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "1000 variants, at most 32" in e.value.details()
    )
    with Client(server.target) as c:
        for i in range(50):  # no flag routes addmul: the override names nothing, the variant is ""
            assert c.predict("addmul", {"a": A, "b": A}, metadata=[("x-variant", f"v{i}")]).variant == ""
            with pytest.raises(grpc.RpcError):
                c.predict(f"model-{i}", {"a": A, "b": A})
    after = len(urllib.request.urlopen(server.metrics_url, timeout=5).read())
    assert label_values(server, "variant") == {""}
    assert {labels["model"] for _, labels in series(server) if "model" in labels} == {"addmul", "_unknown"}
    assert after < before + 1000, (before, after)  # counts grew a digit; the refusal has its series
