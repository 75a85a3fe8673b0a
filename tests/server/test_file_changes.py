"""Files that change under a loaded version (issue 10, defect 6): noticed by the next scan, counted,
logged, and decided as a restarted server would decide: files that no longer match the manifest
are refused and the version unloaded, on every worker; files that match serve from a new load."""

from __future__ import annotations

import os
import time

import grpc
import numpy as np
import pytest

from ortserve.client import Client
from tests import onnx_models as m
from tests.flags_util import metric

A = np.ones((1, 4), np.float32)


def answer(server, version: str):
    """The sum version ``version`` answers, or the gRPC status it fails with (a new connection)."""
    with Client(server.target) as c:
        try:
            return float(c.predict("addmul", {"a": A, "b": A}, version=version)["sum"][0, 0])
        except grpc.RpcError as e:
            return e.code().name


def wait_for(check, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.1)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_tampered_version_is_unloaded_by_every_worker(tmp_path, start_server, workers):
    m.publish(tmp_path, "addmul", 1, m.addmul(0.0))
    m.publish(tmp_path, "addmul", 2, m.addmul(10.0))
    server = start_server(tmp_path, "--workers", workers, "--poll-interval", "0.2")
    assert answer(server, "2") == 12.0
    (tmp_path / "addmul" / "2" / "model.onnx").write_bytes(m.addmul(99.0).SerializeToString())
    server.wait_log("files changed on disk", timeout=20)
    assert wait_for(lambda: len(server.logs("its changed files are refused")) == int(workers))
    answers = {answer(server, "2") for _ in range(12)}  # new connections: every worker answers some
    assert answers == {"NOT_FOUND"}, answers
    assert {answer(server, "1") for _ in range(4)} == {2.0}
    assert metric(server, "ortserve_model_files_changed_total", model="addmul", version="2") == int(workers)
    refused = server.logs("refused, other versions keep serving")
    assert refused and "sha256" in refused[-1]["message"]
    # published again (files and manifest): loaded again, within a scan
    m.publish(tmp_path, "addmul", 2, m.addmul(20.0))
    assert wait_for(lambda: {answer(server, "2") for _ in range(6)} == {22.0})


def test_changed_files_that_still_match_their_manifest_serve_on(tmp_path, start_server):
    m.publish(tmp_path, "addmul", 1, m.addmul(0.0))
    server = start_server(tmp_path, "--poll-interval", "0.2")
    model = tmp_path / "addmul" / "1" / "model.onnx"
    os.utime(model, ns=(time.time_ns(), time.time_ns()))  # touched: same bytes, new stamp
    server.wait_log("serving from its changed files", timeout=20)
    assert answer(server, "1") == 2.0
    assert metric(server, "ortserve_model_files_changed_total", model="addmul", version="1") == 1
    assert not server.logs("its changed files are refused")
