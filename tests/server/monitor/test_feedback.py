"""Ground truth joined to predictions on a real server: online accuracy per flag variant under a 50/50
split, the same over V2 (tritonclient to the virtual model ortserve.feedback), regression errors, and
ids that do not join (unknown, expired, duplicate, invalid) counted rather than refused."""

from __future__ import annotations

import json
import time

import grpc
import numpy as np
import onnx
import pytest
import tritonclient.grpc as triton
from onnx import TensorProto, helper, numpy_helper

from ortserve.client import Client
from ortserve.testing import ServerProcess
from tests.flags_util import metric
from tests.onnx_models import publish
from tests.server.monitor.conftest import copy_version, train_split

CONFIG = """
default_version = "1"
max_batch_size = 64
"""
SPLIT = {
    "flags": {
        "digits": {
            "state": "ENABLED",
            "defaultVariant": "good",
            "variants": {"good": "1", "rough": "2"},
            "targeting": {"fractional": [["good", 50], ["rough", 50]]},
        }
    }
}


def rough_model() -> onnx.ModelProto:
    """label = argmax(input @ W) for a fixed random W: a real classifier that is mostly wrong."""
    w = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "rough",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def total_model() -> onnx.ModelProto:
    """A regressor: y = sum of the 4 inputs, float32 [batch, 1]."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
        "total",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def repo(tmp_path_factory, demo_version):
    root = tmp_path_factory.mktemp("repo")
    copy_version(demo_version, root, "1", CONFIG)
    publish(root, "digits", 2, rough_model())
    publish(root, "total", 1, total_model())
    (root / "flags.json").write_text(json.dumps(SPLIT))
    return root


@pytest.fixture(scope="module")
def server(repo):
    s = ServerProcess(repo, "--drift-sample-rate", "0")
    yield s
    assert s.stop() == 0


def test_online_accuracy_per_variant_under_a_50_50_split(server):
    x, y = train_split()
    x, y = x[:600], y[:600]
    served: dict[str, list[bool]] = {"good": [], "rough": []}
    items = []
    with Client(server.target) as c:
        for i in range(len(x)):
            r = c.predict("digits", {"input": x[i : i + 1]}, targeting_key=f"user-{i}")
            served[r.variant].append(bool(r["label"][0] == y[i]))
            items.append((r.request_id, [int(y[i])], [], 1.0 if r.variant == "good" else None))
        results = c.feedback_many(items)
    assert len(results) == len(x)
    assert {r.status for r in results} <= {"correct", "incorrect"}
    assert 200 < len(served["good"]) < 400  # a 50/50 split of 600 sticky keys
    for variant, version in (("good", "1"), ("rough", "2")):
        labels = {"model": "digits", "version": version, "variant": variant}
        correct = metric(server, "ortserve_feedback_total", outcome="correct", **labels)
        incorrect = metric(server, "ortserve_feedback_total", outcome="incorrect", **labels)
        assert correct == sum(served[variant]) and incorrect == len(served[variant]) - sum(served[variant])
    good = metric(server, "ortserve_feedback_total", outcome="correct", variant="good") / len(served["good"])
    rough = metric(server, "ortserve_feedback_total", outcome="correct", variant="rough") / len(
        served["rough"]
    )
    assert good > 0.95 and rough < 0.5
    assert metric(server, "ortserve_feedback_reward_count", variant="good") == len(served["good"])
    assert metric(server, "ortserve_feedback_reward_sum", variant="good") == len(served["good"])


def test_unknown_duplicate_and_invalid_feedback_is_counted_not_refused(server):
    before = {
        r: metric(server, "ortserve_feedback_unmatched_total", reason=r)
        for r in ("unknown", "duplicate", "invalid")
    }
    x, y = train_split()
    with Client(server.target) as c:
        r = c.predict("digits", {"input": x[:3]}, version="1", request_id="batch-of-3")
        assert c.feedback("never-seen", labels=[1]).status == "unknown"
        wrong = c.feedback("batch-of-3", labels=[1])
        assert wrong.status == "invalid" and wrong.message == "the request had 3 rows, got 1 labels"
        targets = c.feedback("batch-of-3", targets=[1.0, 2.0, 3.0])
        assert targets.status == "invalid" and "send labels, not targets" in targets.message
        first = c.feedback("batch-of-3", labels=y[:3])
        assert (first.status, first.rows, first.correct) == ("correct", 3, int((r["label"] == y[:3]).sum()))
        assert c.feedback("batch-of-3", labels=y[:3]).status == "duplicate"
    after = {k: metric(server, "ortserve_feedback_unmatched_total", reason=k) for k in before}
    assert {k: after[k] - before[k] for k in before} == {"unknown": 1, "duplicate": 1, "invalid": 2}


def test_regression_targets_give_absolute_errors(server):
    with Client(server.target) as c:
        r = c.predict("total", {"x": np.array([[1, 2, 3, 4], [0, 0, 0, 1]], np.float32)})
        result = c.feedback(r.request_id, targets=[10.5, 3.0])
    assert (result.status, result.rows) == ("scored", 2)
    assert metric(server, "ortserve_feedback_total", model="total", outcome="scored") == 2
    assert metric(server, "ortserve_feedback_abs_error_sum", model="total") == pytest.approx(0.5 + 2.0)
    assert metric(server, "ortserve_feedback_abs_error_bucket", model="total", le="1.0") == 1


def test_feedback_over_v2_to_the_virtual_model(server):
    x, y = train_split()
    client = triton.InferenceServerClient(server.target)
    ids = []
    for i in range(3):
        pixels = triton.InferInput("input", [2, 64], "FP32")
        pixels.set_data_from_numpy(x[2 * i : 2 * i + 2])
        kwargs = {"request_id": f"v2-{i}"} if i else {}  # the first has no id: the server gives one
        response = client.infer("digits", [pixels], model_version="1", **kwargs).get_response()
        ids.append(response.id or response.parameters["request_id"].string_param)
    assert ids[0] and ids[1:] == ["v2-1", "v2-2"]
    rows = [ids[0], ids[0], ids[1], ids[1], "nobody"]
    request_id = triton.InferInput("request_id", [5], "BYTES")
    request_id.set_data_from_numpy(np.array([s.encode() for s in rows], dtype=object))
    label = triton.InferInput("label", [5], "INT64")
    label.set_data_from_numpy(np.array([*y[:4], 0], np.int64))
    result = client.infer("ortserve.feedback", [request_id, label])
    status = [s.decode() for s in result.as_numpy("status")]
    assert status[4] == "unknown" and status[0] == status[1] and set(status[:4]) <= {"correct", "incorrect"}
    with pytest.raises(triton.InferenceServerException, match="expected either 'label' or 'target'"):
        client.infer("ortserve.feedback", [request_id])


def test_ids_expire_and_feedback_can_be_off(repo):
    s = ServerProcess(repo, "--feedback-ttl", "1", "--drift-sample-rate", "0")
    try:
        with Client(s.target) as c:
            r = c.predict("total", {"x": np.ones((1, 4), np.float32)})
            time.sleep(2.0)  # past --feedback-ttl: ground truth this late is not joined
            assert c.feedback(r.request_id, targets=[4.0]).status == "unknown"
    finally:
        assert s.stop() == 0
    s = ServerProcess(repo, "--feedback-index-size", "0")
    try:
        with Client(s.target) as c, pytest.raises(grpc.RpcError) as e:
            c.feedback("any", labels=[1])
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--feedback-index-size 0" in e.value.details()
    finally:
        assert s.stop() == 0
