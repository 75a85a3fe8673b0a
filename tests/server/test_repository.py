"""The model repository while serving: versions added and removed under load, tampered files,
version policies and default_version."""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import AsyncClient, Client
from ortserve.repository import ConfigError, VersionPolicy, parse_model_config
from tests import onnx_models as m

A = np.ones((1, 4), np.float32)


def served_sum(client, **kw) -> float:
    return float(client.predict("addmul", {"a": A, "b": A}, **kw)["sum"][0, 0])


def test_versions_added_and_removed_under_load_fail_nothing(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(offset=100))
    server = start_server(tmp_path, "--poll-interval", "0.1")
    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = asyncio.Event()

    async def load(c: AsyncClient):
        while not stop.is_set():
            try:
                r = await c.predict("addmul", {"a": A, "b": A}, timeout=10)
                seen[r.version] = seen.get(r.version, 0) + 1
                assert float(r["sum"][0, 0]) == 2 + 100 * int(r.version)
            except Exception as e:  # any failure is a test failure
                failures.append(repr(e))

    async def wait_until(cond, timeout=15.0):
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, f"timed out; seen {seen}"
            await asyncio.sleep(0.05)

    async def main():
        async with AsyncClient(server.target) as c:
            workers = [asyncio.ensure_future(load(c)) for _ in range(8)]
            await wait_until(lambda: seen.get("1", 0) > 50)
            m.publish(tmp_path, "addmul", 2, m.addmul(offset=200))  # the default becomes the highest: 2
            await wait_until(lambda: seen.get("2", 0) > 50)
            shutil.rmtree(tmp_path / "addmul" / "1")
            server.wait_log("version 1: unloaded")
            m.publish(tmp_path, "addmul", 3, m.addmul(offset=300))
            await wait_until(lambda: seen.get("3", 0) > 50)
            shutil.rmtree(tmp_path / "addmul" / "2")
            server.wait_log("version 2: unloaded")
            n3 = seen["3"]
            await wait_until(lambda: seen["3"] > n3 + 50)
            stop.set()
            await asyncio.gather(*workers)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.predict("addmul", {"a": A, "b": A}, version="1")
            assert e.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(main())
    assert failures == []
    assert set(seen) == {"1", "2", "3"}


def test_tampered_version_is_refused_and_others_keep_serving(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(offset=100))
    bad = m.publish(tmp_path, "addmul", 2, m.addmul(offset=200))
    other = m.addmul(offset=666).SerializeToString()
    (bad / "model.onnx").write_bytes(other)  # a valid model, but not the one the manifest names
    server = start_server(tmp_path)
    line = server.wait_log("version 2: refused")
    assert "sha256" in line["message"] and "manifest says" in line["message"]
    with Client(server.target) as c:
        assert served_sum(c) == 102  # the default falls back to the highest loaded version
        with pytest.raises(grpc.RpcError) as e:
            served_sum(c, version="2")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    failures = {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "ortserve_model_load_failures_total"
    }
    assert failures == {(("model", "addmul"), ("version", "2")): 1.0}


def test_missing_manifest_refused_when_required(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(offset=100))
    m.publish(tmp_path, "addmul", 2, m.addmul(offset=200), manifest=False)
    server = start_server(tmp_path, "--require-manifest")
    server.wait_log("no manifest.json and require_manifest is set")
    with Client(server.target) as c:
        assert [mm.versions for mm in c.list_models().models] == [["1"]]


def test_version_policy_and_default_version(tmp_path, start_server):
    config = 'default_version = "2"\n[versions]\npolicy = "latest 2"\n'
    for v in (1, 2, 3):
        m.publish(tmp_path, "addmul", v, m.addmul(offset=100 * v), config if v == 1 else None)
    server = start_server(tmp_path)
    with Client(server.target) as c:
        (model,) = c.list_models().models
        assert list(model.versions) == ["2", "3"] and model.default_version == "2"
        assert served_sum(c) == 202
        assert served_sum(c, version="3") == 302


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_size = -1", "config.toml: max_batch_size: expected an integer >= 0, got -1"),
        ("max_batch_size = true", "config.toml: max_batch_size: expected an integer >= 0, got true"),
        ("colour = 1", "config.toml: unknown key 'colour'; expected one of: batching, default_version, "),
        ("batching = 3", "config.toml: batching: expected a table, got 3"),
        (
            "[batching]\nmax_queue_size = 0",
            "config.toml [batching] max_queue_size: expected an integer >= 1, got 0",
        ),
        (
            "[batching]\nmax_queue_dely_us = 5",
            "config.toml [batching]: unknown key 'max_queue_dely_us'; did you mean 'max_queue_delay_us'?",
        ),
        (
            "[batching]\npreferred_batch_sizes = [8, 0]",
            "config.toml [batching] preferred_batch_sizes: expected a list of integers >= 1, got [8, 0]",
        ),
        (
            "[runtime]\ngraph_optimization_level = 'max'",
            "config.toml [runtime] graph_optimization_level: expected one of 'disable', 'basic', 'extended', "
            "'all', got 'max'",
        ),
        (
            "[runtime]\nproviders = []",
            "config.toml [runtime] providers: expected a non-empty list of strings, got []",
        ),
        ("[runtime]\nwarmup = 1", "config.toml [runtime] warmup: expected true or false, got 1"),
        (
            "[monitoring]\npayload_log_rate = 1.5",
            "config.toml [monitoring] payload_log_rate: expected a number from 0 to 1, got 1.5",
        ),
        (
            "[monitoring]\ndrift_sample_rate = 'x'",
            "config.toml [monitoring] drift_sample_rate: expected a number from 0 to 1, got 'x'",
        ),
        (
            "[monitoring]\npayload_log_rates = 1",
            "config.toml [monitoring]: unknown key 'payload_log_rates'; did you mean 'payload_log_rate'?",
        ),
        (
            "[versions]\npolicy = 'newest'",
            'config.toml [versions] policy: expected "all", "latest N" or a list of versions, got \'newest\'',
        ),
        (
            "[[inputs]]\nname = 'x'\nshape = [-2]",
            "config.toml: inputs[0].shape: expected a list of integers >= -1",
        ),
        ("[[inputs]]\ndtype = 'float32'", "config.toml: inputs[0]: missing key 'name'"),
        (
            "default_version = 'one'",
            "config.toml: default_version: expected a version such as \"2\", got 'one'",
        ),
    ],
)
def test_bad_config_is_explained(text, message):
    import tomllib

    with pytest.raises(ConfigError) as e:
        parse_model_config("m", tomllib.loads(text))
    assert str(e.value).startswith(message)


def test_version_policies_select():
    versions = ["1", "10", "2", "3"]
    assert VersionPolicy().select(versions) == ["1", "2", "3", "10"]
    assert VersionPolicy("latest 2").select(versions) == ["3", "10"]
    assert VersionPolicy(("2", "9")).select(versions) == ["2"]
    assert VersionPolicy("latest").describe() == "latest 1" and VersionPolicy(("2", "9")).kind == "specific"


def test_runtime_options_reach_onnxruntime(tmp_path, start_server):
    config = "[runtime]\nintra_op_threads = 1\ninstances = 2\nallow_spinning = false\ngraph_optimization_level = 'basic'\n"
    assert parse_model_config("m", {"runtime": {"allow_spinning": False}}).runtime.allow_spinning is False
    m.publish(tmp_path, "addmul", 1, m.addmul(), config)
    server = start_server(tmp_path)
    line = server.wait_log("version 1: loaded")
    assert "2 instance(s)" in line["message"]
    with Client(server.target) as c:
        assert served_sum(c) == 2


def test_config_change_reloads_and_a_bad_one_keeps_the_old_config(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(offset=100), "max_batch_size = 16\n")
    server = start_server(tmp_path, "--poll-interval", "0.1")
    config = tmp_path / "addmul" / "config.toml"
    with Client(server.target) as c:
        assert c.metadata("addmul").max_batch_size == 16
        # names an input the model does not have: every version fails to load under it
        config.write_text('max_batch_size = 8\n[[inputs]]\nname = "nope"\n')
        line = server.wait_log("config.toml change refused")
        assert "version(s) 1" in line["message"]
        assert c.metadata("addmul").max_batch_size == 16 and served_sum(c) == 102
        # the refused config does not freeze the model: a new version still arrives
        m.publish(tmp_path, "addmul", 2, m.addmul(offset=200))
        end = time.monotonic() + 15
        while list(c.list_models().models[0].versions) != ["1", "2"]:
            assert time.monotonic() < end, "version 2 was not loaded under the serving config"
            time.sleep(0.1)
        assert served_sum(c, version="2") == 202
        config.write_text("max_batch_size = 8\n")
        end = time.monotonic() + 15
        while c.metadata("addmul").max_batch_size != 8:
            assert time.monotonic() < end, "the good config was not applied"
            time.sleep(0.1)
        assert served_sum(c) == 202
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    ready = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "ortserve_model_ready" and s.labels == {"model": "addmul", "version": "1"}
    ]
    assert ready == [1.0]
