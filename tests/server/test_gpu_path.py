"""The GPU path, as far as the CPU runs it: IO binding (``[runtime] io_binding``) and batches padded to
fixed sizes (``cuda_graph_batch_sizes``) run through the same code on the CPU provider, which binds CPU
buffers; CUDA graphs and device copies need a GPU (``benchmarks/gpu_check.sh``). Every answer is
compared with plain ``session.run`` on the same model."""

from __future__ import annotations

import asyncio
import tomllib

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest

from ortserve.client import AsyncClient, Client
from ortserve.core.binding import MAX_SHAPES, BoundRunner, Device
from ortserve.core.runtime import SessionPool
from ortserve.repository import parse_model_config
from tests import onnx_models as m
from tests.server.v2.common import TYPES, bf16_model, identities, random_inputs

BOUND = "max_batch_size = 16\n[runtime]\nio_binding = true\n"
PADDED = "max_batch_size = 16\n[runtime]\nio_binding = true\ncuda_graph_batch_sizes = [4, 8]\n"


def pool(tmp_path, model, config: str = BOUND, name: str = "m") -> SessionPool:
    folder = m.publish(tmp_path, name, 1, model)
    return SessionPool(folder / "model.onnx", parse_model_config(name, tomllib.loads(config)), 10**7)


def plain(model, feeds, names) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, feeds)


def same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("config", [BOUND, PADDED], ids=["bound", "padded"])
def test_every_numeric_dtype_answers_what_session_run_answers(tmp_path, config):
    datatypes = list(TYPES)  # BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64
    model = identities(datatypes)
    p = pool(tmp_path, model, config)
    for rows in (1, 3, 4, 7, 13):
        feeds = random_inputs(datatypes, rows=rows, seed=rows)
        same(p.run(feeds), plain(model, feeds, p.output_names))


@pytest.mark.parametrize("config", [BOUND, PADDED], ids=["bound", "padded"])
def test_bfloat16_goes_through_the_host_and_answers_the_same(tmp_path, config):
    p = pool(tmp_path, bf16_model(), config)
    x = np.array([[1.5, -2.0, 0.25, 8.0], [3.0, 0.5, -1.0, 2.0]], dtype=ml_dtypes.bfloat16)
    sum_float, same_bf16 = p.run({"x": x})
    np.testing.assert_array_equal(sum_float, x.astype(np.float32))
    assert same_bf16.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(same_bf16.view(np.uint16), x.view(np.uint16))


def test_a_float_model_with_dynamic_batch_answers_the_same_at_every_size(tmp_path):
    model = m.addmul(0.5)
    p = pool(tmp_path, model, PADDED)
    rng = np.random.default_rng(3)
    for rows in [1, 2, 4, 5, 8, 16, 3, 1, 9]:
        feeds = {k: rng.standard_normal((rows, 4)).astype(np.float32) for k in "ab"}
        same(p.run(feeds), plain(model, feeds, p.output_names))


def test_batches_run_padded_to_the_next_size_with_zero_rows_and_come_back_sliced(tmp_path):
    p = pool(tmp_path, m.batch_probe(), PADDED)
    rng = np.random.default_rng(5)
    # rows -> the rows ONNX Runtime ran: the next size, or the batch itself above the largest one.
    # 7 rows then 5 fill then reuse the size-8 buffers: the rows the 7 left must be zero again.
    for rows, ran in [(1, 4), (3, 4), (4, 4), (7, 8), (5, 8), (8, 8), (9, 9), (16, 16), (2, 4)]:
        x = rng.standard_normal((rows, 4)).astype(np.float32)
        seen, total = p.run({"x": x})
        assert seen.shape == total.shape == (rows, 4)
        np.testing.assert_allclose(seen, x + ran, rtol=1e-6)
        np.testing.assert_allclose(total, np.broadcast_to(x.sum(0), (rows, 4)), rtol=1e-5, atol=1e-5)


def test_unpadded_bound_runs_see_the_batch_itself(tmp_path):
    p = pool(tmp_path, m.batch_probe(), BOUND)
    x = np.ones((3, 4), np.float32)
    seen, _ = p.run({"x": x})
    np.testing.assert_array_equal(seen, x + 3)


def test_answers_own_their_memory_after_the_buffers_are_reused(tmp_path):
    p = pool(tmp_path, m.batch_probe(), PADDED)
    first = p.run({"x": np.zeros((3, 4), np.float32)})
    kept = [a.copy() for a in first]
    p.run({"x": np.full((4, 4), 100, np.float32)})  # same padded size: same bound buffers
    same(first, kept)
    assert all(a.base is None or a.base.flags.owndata for a in first)


def test_each_padded_shape_gets_its_buffers_once_and_the_number_is_bounded(tmp_path):
    model = m.pair()  # x [batch, n], y [batch, m]: each n is a shape of its own
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    runner = BoundRunner(session, ["out"], Device(), sizes=(2, 4))
    assert [runner.padded_size(r) for r in (1, 2, 3, 4, 5)] == [2, 2, 4, 4, None]
    for _ in range(3):
        for rows in (1, 3):
            x = np.ones((rows, 2), np.float32)
            np.testing.assert_array_equal(runner.run({"x": x, "y": x}), [x + x])
    assert runner.shapes == 2
    for n in range(MAX_SHAPES + 5):  # more shapes than allowed: the extra ones run unpadded
        x = np.full((1, n + 1), 2, np.float32)
        np.testing.assert_array_equal(runner.run({"x": x, "y": x})[0], x * 2)
    assert runner.shapes == MAX_SHAPES


def test_string_tensors_are_refused_with_io_binding(tmp_path):
    with pytest.raises(ValueError, match="io_binding: 'text' is a string tensor"):
        pool(tmp_path, m.strings(), "max_batch_size = 4\n[runtime]\nio_binding = true\n")


@pytest.mark.parametrize(
    ("model", "config", "message"),
    [
        (m.addmul(), "[runtime]\nio_binding = true\ncuda_graph_batch_sizes = [128]\n", r"<= max_batch_size \(64\), got 128"),
        (m.fixed(), "[runtime]\nio_binding = true\ncuda_graph_batch_sizes = [2]\n", "no batch dimension"),
    ],
)  # fmt: skip
def test_padded_sizes_beyond_the_models_batch_limit_refuse_the_version(tmp_path, model, config, message):
    with pytest.raises(ValueError, match=message):
        pool(tmp_path, model, config)


def test_warmup_runs_every_padded_size_of_every_instance(tmp_path):
    config = PADDED.replace("[runtime]\n", "[runtime]\ninstances = 2\n")
    p = pool(tmp_path, m.batch_probe(), config)
    assert p.padded_shapes == [0, 0]
    p.warmup()
    assert p.padded_shapes == [2, 2]  # sizes 4 and 8, made before any request


def test_sessions_get_the_options_built_for_their_providers(tmp_path):
    config = 'max_batch_size = 8\n[runtime]\nproviders = ["CPUExecutionProvider"]\n'
    config += "[runtime.provider_options.CPUExecutionProvider]\nuse_arena = false\n"
    p = pool(tmp_path, m.addmul(), config)
    assert p.provider_options == {"CPUExecutionProvider": {"use_arena": "0"}}
    assert p.providers == ["CPUExecutionProvider"]


@pytest.mark.skipif(
    "TensorrtExecutionProvider" in ort.get_available_providers(), reason="needs a build without TensorRT"
)
def test_tensorrt_asked_for_on_a_build_without_it_leaves_the_version_folder_alone(tmp_path):
    config = '[runtime]\nproviders = ["TensorrtExecutionProvider", "CPUExecutionProvider"]\n'
    config += "allow_cpu_fallback = true\n"
    p = pool(tmp_path, m.addmul(), config)
    assert p.providers == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider" not in p.provider_options
    assert not (tmp_path / "m" / "1" / "trt-cache").exists()


# -- served ------------------------------------------------------------------------------------
SERVED = {
    "plain": "max_batch_size = 16\n[batching]\nmax_queue_delay_us = 2000\n",
    "bound": "max_batch_size = 16\n[batching]\nmax_queue_delay_us = 2000\n[runtime]\nio_binding = true\n",
    "padded": PADDED.replace("[runtime]", "[batching]\nmax_queue_delay_us = 2000\n[runtime]"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from ortserve.testing import ServerProcess

    repo = tmp_path_factory.mktemp("repo")
    for name, config in SERVED.items():
        m.publish(repo, name, 1, m.addmul(0.25), config)
        m.publish(repo, f"{name}_types", 1, identities(list(TYPES)), config)
    m.publish(repo, "probe", 1, m.batch_probe(), SERVED["padded"])
    server = ServerProcess(repo)
    yield server
    assert server.stop() == 0


def test_predict_answers_identically_with_and_without_io_binding(served):
    rng = np.random.default_rng(11)
    with Client(served.target) as c:
        for rows in (1, 3, 8, 11):
            feeds = {k: rng.standard_normal((rows, 4)).astype(np.float32) for k in "ab"}
            typed = random_inputs(list(TYPES), rows=rows, seed=rows)
            answers = {n: (c.predict(n, feeds), c.predict(f"{n}_types", typed)) for n in SERVED}
            for name in ("bound", "padded"):
                for got, want in zip(answers[name], answers["plain"]):
                    assert set(got.outputs) == set(want.outputs)
                    for out in want.outputs:
                        assert got[out].dtype == want[out].dtype
                        np.testing.assert_array_equal(got[out], want[out])


def test_concurrent_requests_batched_and_padded_each_get_their_own_rows(served):
    async def main():
        async with AsyncClient(served.target) as c:
            xs = [np.full((1 + i % 3, 4), i, np.float32) for i in range(24)]
            answers = await asyncio.gather(*(c.predict("probe", {"x": x}) for x in xs))
        for x, answer in zip(xs, answers):
            seen = answer["seen"]
            assert seen.shape == x.shape
            ran = seen - x  # the batch ONNX Runtime ran: a padded size, or more rows than the largest
            assert np.all(ran == ran[0, 0]) and (ran[0, 0] in (4, 8) or ran[0, 0] > 8)

    asyncio.run(main())


def test_the_served_version_reports_its_providers_and_binding(served):
    with Client(served.target) as c:
        assert list(c.metadata("padded").providers) == ["CPUExecutionProvider"]
    logged = {e["message"].split("/")[-3]: e for e in served.lines if e.get("event") == "io_binding"}
    assert set(logged) == {"bound", "bound_types", "padded", "padded_types", "probe"}
    assert logged["padded"]["padded_sizes"] == [4, 8] and logged["bound"]["padded_sizes"] == []
    assert all(e["device"] == "cpu:0" and e["cuda_graphs"] is False for e in logged.values())
