"""Shadow traffic end to end: mirrored requests compared into metrics; a full mirror queue drops
(and counts) while the callers keep being answered."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ortserve.client import AsyncClient
from ortserve.testing import ServerProcess
from tests import onnx_models as m
from tests.flags_util import metric, wait_metric

CONFIG = """
default_version = "1"
max_batch_size = 16
[batching]
max_queue_delay_us = 500
max_queue_size = 4096
"""
FLAGS = {
    "flags": {
        "scale": {"state": "ENABLED", "defaultVariant": "v1", "variants": {"v1": "1"}},
        # the request's "shadow" attribute (gRPC metadata) picks the shadow: the same model, or a flipped one
        "scale.shadow": {
            "state": "ENABLED",
            "defaultVariant": "off",
            "variants": {"off": "", "same": "2", "flip": "3"},
            "targeting": {
                "if": [
                    {"==": [{"var": "shadow"}, "same"]},
                    "same",
                    {"==": [{"var": "shadow"}, "flip"]},
                    "flip",
                    "off",
                ]
            },
        },
    }
}


def scale(k: float) -> onnx.ModelProto:
    """y = x * k; x float32 [batch, 5]. k = -1 turns every row's argmax into its argmin."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [numpy_helper.from_array(np.array(k, dtype=np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    for version, k in (("1", 1.0), ("2", 1.0), ("3", -1.0)):
        m.publish(root, "scale", version, scale(k), CONFIG)
    (root / "flags.json").write_text(json.dumps(FLAGS))
    return root


def rows(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(5).astype(np.float32).reshape(1, 5) + 1 for _ in range(n)]  # distinct, positive


async def _send(target: str, xs: list[np.ndarray], shadow: str, concurrency: int = 64) -> list[float]:
    """Latency of each request, in seconds; every request must succeed."""
    async with AsyncClient(target) as c:
        sem = asyncio.Semaphore(concurrency)

        async def one(x: np.ndarray) -> float:
            async with sem:
                t = time.perf_counter()
                r = await c.predict(
                    "scale", {"x": x}, targeting_key="k", metadata=[("shadow", shadow)], timeout=30
                )
                elapsed = time.perf_counter() - t
            assert r.version == "1" and r.variant == "v1"
            np.testing.assert_array_equal(r["y"], x)
            return elapsed

        return await asyncio.gather(*(one(x) for x in xs))


def test_agreeing_and_disagreeing_shadows_are_measured(repo, tmp_path):
    flags = tmp_path / "elsewhere.json"  # --flags: a file outside the repository
    flags.write_text(json.dumps(FLAGS))
    (repo / "flags.json").write_text(json.dumps({"flags": {}}))
    server = ServerProcess(repo, "--flags", str(flags))
    try:
        n = 40
        asyncio.run(_send(server.target, rows(n, 1), "same"))
        asyncio.run(_send(server.target, rows(n, 2), "flip"))
        asyncio.run(_send(server.target, rows(10, 3), "off"))
        same = {"model": "scale", "primary_version": "1", "shadow_version": "2"}
        flip = {**same, "shadow_version": "3"}
        for labels in (same, flip):
            assert wait_metric(server, "ortserve_shadow_requests_total", n, outcome="compared", **labels) == n
        assert metric(server, "ortserve_shadow_requests_total", outcome="compared") == 2 * n  # "off": none

        # identical model: every top-1 agrees, no difference, cosine 1
        assert metric(server, "ortserve_shadow_rows_total", output="y", **same) == n
        assert metric(server, "ortserve_shadow_top1_agreements_total", output="y", **same) == n
        assert metric(server, "ortserve_shadow_max_abs_diff_sum", output="y", **same) == 0
        assert metric(server, "ortserve_shadow_cosine_similarity_sum", output="y", **same) == pytest.approx(n)
        # y = -x: no top-1 agrees, max |diff| = 2 * max(x) = 10, cosine -1
        assert metric(server, "ortserve_shadow_rows_total", output="y", **flip) == n
        assert metric(server, "ortserve_shadow_top1_agreements_total", output="y", **flip) == 0
        assert metric(server, "ortserve_shadow_max_abs_diff_sum", output="y", **flip) == pytest.approx(10 * n)
        assert metric(server, "ortserve_shadow_cosine_similarity_sum", output="y", **flip) == pytest.approx(
            -n
        )
        assert metric(server, "ortserve_shadow_cosine_similarity_bucket", output="y", le="0.0", **flip) == n
        assert metric(server, "ortserve_shadow_requests_total", outcome="error") == 0
    finally:
        assert server.stop() == 0


def test_full_shadow_queue_drops_and_counts_while_callers_are_answered(repo):
    (repo / "flags.json").write_text(json.dumps(FLAGS))
    server = ServerProcess(repo, "--shadow-queue-size", "2", "--shadow-workers", "1")
    try:
        asyncio.run(_send(server.target, rows(50, 0), "off"))  # warm up

        async def burst():  # mirrored and unmirrored callers side by side, so both see the same machine
            return await asyncio.gather(
                _send(server.target, rows(400, 4), "same"), _send(server.target, rows(400, 5), "off")
            )

        mirrored, plain = map(sorted, asyncio.run(burst()))
        labels = {"model": "scale", "primary_version": "1", "shadow_version": "2"}
        dropped = metric(server, "ortserve_shadow_requests_total", outcome="dropped", **labels)
        assert dropped > 0
        end = time.monotonic() + 10
        while time.monotonic() < end:
            total = sum(
                metric(server, "ortserve_shadow_requests_total", outcome=o, **labels)
                for o in ("compared", "error", "dropped")
            )
            if total == 400:
                break
            time.sleep(0.05)
        assert total == 400  # every mirrored request is accounted for: compared or dropped
        # a mirrored caller does not wait for its shadow (loose bound: a shared 2-core machine)
        p50_plain, p50_mirrored = plain[len(plain) // 2], mirrored[len(mirrored) // 2]
        print(
            f"dropped {dropped}/400, p50 {p50_plain * 1e3:.2f} ms unmirrored, {p50_mirrored * 1e3:.2f} ms mirrored"
        )
        assert p50_mirrored < 1.5 * p50_plain + 0.005, (p50_plain, p50_mirrored)
    finally:
        assert server.stop() == 0
