"""``ortserve-optimize retrain``: a real server logs drifted requests and their feedback; retrain reads the
payload log, fine-tunes (or re-calibrates) the default version, gates it against the default on a held-out
slice, publishes it with its lineage, and starts its canary on the server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.learning_loop import shifted
from ortserve.admin_client import AdminClient
from ortserve.client import AsyncClient
from ortserve.optimize.__main__ import main as optimize_main
from ortserve.optimize.demo import build
from ortserve.optimize.examples.digits import digits_split
from ortserve.repository import publish_version, read_manifest, set_default_version
from ortserve.repository.payload import labelled
from ortserve.testing import ServerProcess

# A server, 300 requests with feedback and a fine-tune: generous limits for a busy 2-core machine.
pytestmark = pytest.mark.timeout(600)
FAST = ["--epochs", "15", "--threads", "1", "--bench-seconds", "0.02", "--quiet"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A repository with digits version 1 and a payload log of 300 drifted requests with feedback."""
    root = tmp_path_factory.mktemp("retrain")
    repo, payloads = root / "models", root / "payloads"
    build(repo, quiet=True)
    x, _, y, _ = digits_split()
    x = shifted(x)
    server = ServerProcess(repo, "--payload-log", str(payloads), "--payload-log-rate", "1")

    async def traffic() -> None:
        async with AsyncClient(server.target) as client:
            for i in range(300):
                r = await client.predict("digits", {"input": x[i : i + 1]})
                await client.feedback(r.request_id, labels=[int(y[i])])

    asyncio.run(traffic())
    assert server.stop() == 0  # the payload log is written out
    assert sum(1 for _ in labelled(payloads, "digits")) == 300
    np.savez(root / "replay.npz", input=digits_split()[0], labels=digits_split()[2])
    return root, repo, payloads


def copy_repo(root: Path, repo: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(repo, target)
    return target


def test_retrain_publishes_a_better_version_with_its_lineage_and_starts_its_canary(logged, tmp_path, capsys):
    root, repo, payloads = logged
    repo = copy_repo(tmp_path, repo, "models")
    server = ServerProcess(repo, "--poll-interval", "0.5")
    try:
        code = optimize_main(
            ["retrain", "--repo", str(repo), "--model", "digits", "--payload-log", str(payloads),
             "--source", "ortserve.optimize.examples.digits:mlp", "--replay", str(root / "replay.npz"),
             "--out", str(tmp_path / "out"), "--canary", "--server", server.target, *FAST]
        )  # fmt: skip
        assert code == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["version"] == "2" and summary["parent"] == "1"
        acc = summary["holdout_accuracy"]
        assert (
            acc["candidate"] > acc["parent"] + 0.15
        )  # shifted digits: version 1 is right about half the time
        with AdminClient(server.target) as admin:
            status = admin.get_rollout("digits")
        assert (status.candidate, status.baseline, status.state) == ("2", "1", "progressing")
    finally:
        server.stop()
    manifest = read_manifest(repo / "digits" / "2")
    assert manifest is not None
    lineage = manifest["retrain"]
    assert lineage["parent"] == "1" and manifest["parent"] == "1" and lineage["mode"] == "finetune"
    assert lineage["rows"]["used"] == 300 and lineage["rows"]["replay"] > 1000
    assert lineage["data_window"]["first"] <= lineage["data_window"]["last"]
    for f in lineage["payload_files"]:  # the files read, by content
        assert hashlib.sha256(Path(f["file"]).read_bytes()).hexdigest() == f["sha256"]
    data = tmp_path / "out" / "data"
    for name, digest in lineage["data_files"].items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest
    assert (repo / "digits" / "2" / "reference.json").exists()  # drift baseline from the new data


def test_a_candidate_that_is_not_better_by_enough_is_not_published(logged, tmp_path, capsys):
    _, repo, payloads = logged
    repo = copy_repo(tmp_path, repo, "models")
    code = optimize_main(
        ["retrain", "--repo", str(repo), "--model", "digits", "--payload-log", str(payloads),
         "--source", "ortserve.optimize.examples.digits:mlp", "--min-improvement", "90",
         "--out", str(tmp_path / "out"), *FAST]
    )  # fmt: skip
    assert code == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["version"] is None and "accuracy drop" in summary["reasons"][0]
    assert not (repo / "digits" / "2").exists()


def test_recalibrate_quantizes_the_fp32_parent_on_the_new_rows(logged, tmp_path, capsys):
    _, repo, payloads = logged
    repo = copy_repo(tmp_path, repo, "models")
    v1 = repo / "digits" / "1"
    # stands in for a quantized variant of version 1: its manifest names version 1 as its parent
    publish_version(repo, "digits", {"model.onnx": v1 / "model.onnx"}, {"parent": "1"}, version=2)
    set_default_version(repo / "digits", 2)
    code = optimize_main(
        ["retrain", "--repo", str(repo), "--model", "digits", "--payload-log", str(payloads),
         "--mode", "recalibrate", "--min-improvement", "-5", "--out", str(tmp_path / "out"), *FAST]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = read_manifest(repo / "digits" / summary["version"])
    assert manifest is not None and manifest["retrain"]["parent"] == "2" and manifest["parent"] == "2"
    assert manifest["recipe"]["steps"][0]["step"] == "quantize-static"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--payload-log", "/nonexistent"], "no payload log of model 'digits'"),
        (["--mode", "finetune"], "--source"),
        (["--since", "yesterday"], "RFC 3339"),
        (["--since", "2999-01-01T00:00:00Z"], "no labelled requests"),
        (["--min-rows", "100000"], "fewer than --min-rows"),
    ],
)
def test_bad_input_is_refused_with_the_reason(logged, tmp_path, capsys, extra, words):
    _, repo, payloads = logged
    args = ["retrain", "--repo", str(repo), "--model", "digits", "--payload-log", str(payloads)]
    if "--mode" not in extra:
        args += ["--source", "ortserve.optimize.examples.digits:mlp"]
    code = optimize_main([*args, "--out", str(tmp_path / "out"), *extra, *FAST])
    assert code == 2 and words in capsys.readouterr().err
