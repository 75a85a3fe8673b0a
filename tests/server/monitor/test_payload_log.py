"""--payload-log on a real server: CloudEvents records that read back to the tensors sent, feedback
records that join them (what retraining reads), private files, rotation and the disk bound."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from ortserve.client import Client
from ortserve.repository.payload import FEEDBACK_TYPE, INFERENCE_TYPE, labelled, read_payload_log
from ortserve.testing import ServerProcess
from tests.flags_util import wait_metric
from tests.server.monitor.conftest import copy_version, train_split

CONFIG = 'default_version = "1"\nmax_batch_size = 64\n'


@pytest.fixture(scope="module")
def repo(tmp_path_factory, demo_version):
    root = tmp_path_factory.mktemp("repo")
    copy_version(demo_version, root, "1", CONFIG)
    return root


def test_records_read_back_and_join_their_feedback(repo, tmp_path):
    log_dir = tmp_path / "payloads"
    s = ServerProcess(
        repo, "--payload-log", str(log_dir), "--payload-log-rate", "1", "--drift-sample-rate", "0"
    )
    x, y = train_split()
    sent = {}
    try:
        with Client(s.target) as c:
            for i in range(20):
                r = c.predict("digits", {"input": x[i : i + 2]}, request_id=f"req-{i}")
                sent[r.request_id] = (x[i : i + 2], r["label"])
                if i % 2 == 0:
                    c.feedback(r.request_id, labels=y[i : i + 2])
            c.feedback("unknown-id", labels=[1])
    finally:
        assert s.stop() == 0  # the writer is drained at shutdown
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    files = sorted(log_dir.glob("*/*.jsonl"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

    first = json.loads((log_dir / "digits").glob("*.jsonl").__next__().read_text().splitlines()[0])
    assert first["specversion"] == "1.0" and first["type"] == INFERENCE_TYPE and first["id"] == "req-0"
    assert (
        first["source"].endswith("/digits/1") and first["subject"] == "digits" and first["time"].endswith("Z")
    )
    assert (first["ortservemodel"], first["ortserveversion"], first["ortserveapi"]) == ("digits", "1", "v1")
    assert (
        first["data"]["inputs"]["input"]["dtype"] == "float32" and "b64" in first["data"]["inputs"]["input"]
    )

    records = list(read_payload_log(log_dir, "digits"))
    inferences = [r for r in records if r.type == INFERENCE_TYPE]
    assert [r.id for r in inferences] == [f"req-{i}" for i in range(20)]
    for r in inferences:
        np.testing.assert_array_equal(r.inputs["input"], sent[r.id][0])
        np.testing.assert_array_equal(r.outputs["label"], sent[r.id][1])
    joined = list(labelled(log_dir, "digits"))
    assert [r.id for r, _ in joined] == [f"req-{i}" for i in range(0, 20, 2)]
    assert all(f["labels"] == y[int(r.id[4:]) : int(r.id[4:]) + 2].tolist() for r, f in joined)
    unknown = [r for r in read_payload_log(log_dir, "_unknown") if r.type == FEEDBACK_TYPE]
    assert [r.feedback["status"] for r in unknown] == ["unknown"]


def test_files_rotate_by_size_and_the_folder_stays_bounded(repo, tmp_path):
    log_dir = tmp_path / "payloads"
    args = ("--payload-log-rate", "1", "--payload-log-file-mb", "0.02", "--payload-log-max-mb", "0.1")
    s = ServerProcess(repo, "--payload-log", str(log_dir), *args, "--payload-log-encoding", "lists")
    x, _ = train_split()
    try:
        with Client(s.target) as c:
            for i in range(400):  # about 1.5 KB a record: ~600 KB written in all
                c.predict("digits", {"input": x[i : i + 1]})
        # written by the log's own thread: wait for it rather than read the counter at once
        written = wait_metric(s, "ortserve_payload_records_total", 400, timeout=30, model="digits")
    finally:
        assert s.stop() == 0
    files = sorted((log_dir / "digits").glob("*.jsonl"))
    sizes = [f.stat().st_size for f in files]
    assert written == 400
    assert len(files) > 2 and max(sizes) <= 0.02 * 1024 * 1024 + 4096  # one batch of lines past the mark
    assert sum(sizes) <= 0.1 * 1024 * 1024 + 0.02 * 1024 * 1024  # the bound, and the file being written
    records = list(read_payload_log(log_dir, "digits"))
    assert 0 < len(records) < 400 and records[-1].id  # the oldest went, the newest stayed
    line = json.loads(files[-1].read_text().splitlines()[-1])
    assert isinstance(line["data"]["inputs"]["input"]["data"], list)  # --payload-log-encoding lists
