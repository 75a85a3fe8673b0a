"""Drift end to end: the digits demo's reference profile on a real server; traffic like the
reference stays under the thresholds, scaled pixels cross them; what has no profile exports nothing."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ortserve.client import AsyncClient
from ortserve.repository import MANIFEST, REFERENCE, publish_version
from ortserve.testing import ServerProcess
from tests.server.monitor.conftest import copy_version, digits_data, train_split

CONFIG = """
default_version = "1"
max_batch_size = 64
[batching]
max_queue_delay_us = 500
max_queue_size = 4096
"""
PSI_ALERT = 0.25  # deploy/prometheus: OrtserveFeatureDrift
TOP_K = 5


@pytest.fixture(scope="module")
def repo(tmp_path_factory, demo_version):
    root = tmp_path_factory.mktemp("repo")
    copy_version(demo_version, root, "1", CONFIG)  # takes the undrifted traffic
    copy_version(demo_version, root, "2")  # takes the drifted traffic
    onnx = (demo_version / "model.onnx").read_bytes()
    publish_version(root, "digits", onnx, version=3)  # no reference profile
    # a profile its manifest does not list: not trusted
    reference = (demo_version / REFERENCE).read_bytes()
    v4 = publish_version(root, "digits", {"model.onnx": onnx}, version=4)
    (v4 / REFERENCE).write_bytes(reference)
    return root


@pytest.fixture(scope="module")
def server(repo):
    args = ("--drift-sample-rate", "1", "--drift-interval", "0.2", "--drift-min-rows", "300")
    s = ServerProcess(repo, *args, "--drift-top-k", str(TOP_K))
    yield s
    assert s.stop() == 0


def scrape(server) -> dict[str, list[tuple[dict, float]]]:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def of(samples, name: str, version: str) -> list[tuple[dict, float]]:
    return [(labels, v) for labels, v in samples.get(name, []) if labels.get("version") == version]


async def send(target: str, x: np.ndarray, version: str, rows: int = 4) -> None:
    async with AsyncClient(target) as c:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await c.predict("digits", {"input": x[i : i + rows]}, version=version)

        await asyncio.gather(*(one(i) for i in range(0, len(x), rows)))


def wait_rows(server, version: str, rows: int) -> dict:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        samples = scrape(server)
        window = of(samples, "ortserve_drift_window_rows", version)
        if window and window[0][1] >= rows and of(samples, "ortserve_drift_ks_critical", version):
            return samples
        time.sleep(0.1)
    raise AssertionError(f"version {version}: window never reached {rows} rows: {window}")


def test_undrifted_traffic_stays_under_the_thresholds_and_scaled_pixels_cross_them(server, repo):
    train, _ = train_split()  # like the reference (the demo's test split), but other rows
    asyncio.run(send(server.target, train, "1"))
    asyncio.run(send(server.target, train * 2, "2"))  # pixels scaled: a camera changed
    samples = wait_rows(server, "1", len(train))
    samples = wait_rows(server, "2", len(train))

    critical = of(samples, "ortserve_drift_ks_critical", "1")[0][1]
    assert 0.05 < critical < 0.3
    psi1 = of(samples, "ortserve_feature_drift_psi", "1")
    ks1 = of(samples, "ortserve_feature_drift_ks", "1")
    assert len(psi1) == len(ks1) == TOP_K  # bounded: the top-k features only
    print(
        "undrifted: max PSI", max(v for _, v in psi1), "max KS", max(v for _, v in ks1), "critical", critical
    )
    assert max(v for _, v in psi1) < PSI_ALERT, psi1
    assert max(v for _, v in ks1) < critical, ks1
    (chi2,) = of(samples, "ortserve_prediction_drift_chi2", "1")
    (chi2_critical,) = of(samples, "ortserve_prediction_drift_chi2_critical", "1")
    assert chi2[0]["output"] == "label" and chi2[1] < chi2_critical[1]
    assert of(samples, "ortserve_prediction_drift_psi", "1")[0][1] < PSI_ALERT

    psi2 = of(samples, "ortserve_feature_drift_psi", "2")
    ks2 = of(samples, "ortserve_feature_drift_ks", "2")
    assert len(psi2) == TOP_K
    assert min(v for _, v in psi2) > PSI_ALERT, psi2  # the top features all crossed
    assert max(v for _, v in ks2) > of(samples, "ortserve_drift_ks_critical", "2")[0][1]
    assert {labels["feature"] for labels, _ in psi2} <= {f"input[{i}]" for i in range(64)}

    accuracy = [v for labels, v in samples["ortserve_reference_accuracy"] if labels["version"] == "1"]
    reference = json.loads((repo / "digits" / "1" / REFERENCE).read_text())
    assert accuracy == [pytest.approx(reference["accuracy"])]


def test_versions_without_a_trusted_profile_export_nothing_and_say_so_once(server):
    x, _ = digits_data()
    for version in ("3", "4"):
        asyncio.run(send(server.target, x[:400], version))
    samples = scrape(server)
    for version in ("3", "4"):
        for name in (
            "ortserve_feature_drift_psi",
            "ortserve_drift_window_rows",
            "ortserve_drift_ks_critical",
        ):
            assert not of(samples, name, version), (name, version)
    assert len(server.logs("version 3 has no reference.json")) == 1
    refused = server.logs("version 4: reference profile refused")
    assert len(refused) == 1 and f"not listed in {MANIFEST}" in refused[0]["message"]
