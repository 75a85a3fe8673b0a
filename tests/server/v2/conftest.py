"""The fixtures every V2 test module gets (each module starts its own server over its own copy
of the repository)."""

from __future__ import annotations

import json

import grpc
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from tests import onnx_models as m
from tests.server.v2.common import ADDMUL_CONFIG, FLAGS, TYPED_FIELDS, bf16_model, identities


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    m.publish(root, "addmul", 1, m.addmul(), ADDMUL_CONFIG)
    m.publish(root, "addmul", 2, m.addmul(offset=100.0))
    m.publish(root, "counted", 1, m.addmul(), "max_batch_size = 8\n")
    m.publish(root, "spare", 1, m.addmul(offset=1.0))
    m.publish(root, "types", 1, identities(list(TYPED_FIELDS)))
    m.publish(root, "half", 1, identities(["FP16"]))
    m.publish(root, "gathered", 1, m.addmul(), ADDMUL_CONFIG)
    m.publish(root, "bf16", 1, bf16_model())
    m.publish(root, "streamed", 1, m.addmul(), "[batching]\nmax_queue_size = 1024\n")
    m.publish(root, "strings", 1, m.strings())
    # one intra-op thread: the run's length must not shrink with the core count of the machine (96 matmuls
    # of 512 x 512 took ~150 ms here on one thread; 24 on all cores of a CI machine took 21 ms < 30 ms)
    m.publish(
        root,
        "slow",
        1,
        m.slow(96, 512),
        "max_batch_size = 4\n[batching]\nmax_queue_delay_us = 0\n[runtime]\nintra_op_threads = 1\n",
    )
    m.publish(root, "fixed", 1, m.fixed(), '[versions]\npolicy = "latest 1"\n')
    for version, offset in (("1", 0.0), ("2", 100.0)):
        m.publish(root, "routed", version, m.addmul(offset), 'default_version = "1"\n')
    (root / "flags.json").write_text(json.dumps(FLAGS))
    return root


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.target)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server):
    """A bare V2 stub, for requests tritonclient does not build (typed contents, malformed ones)."""
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
