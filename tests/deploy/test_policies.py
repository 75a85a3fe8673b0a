"""Policy checks CI runs on the deployment files: checkov on the rendered manifests (no failed check; a
check is skipped only inline, with a written reason), hadolint on both Dockerfiles, and the image lock
files against pyproject.toml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import KUSTOMIZATIONS, ROOT, rendered_text, tool

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def checkov(folder: Path) -> dict:
    """checkov's JSON report on the manifests in ``folder``, offline (no download of guidelines)."""
    if not CHECKOV.exists():
        raise AssertionError(f"{CHECKOV} is missing: `make checkov` (run by `make test`) installs it")
    proc = subprocess.run(
        [
            *(str(CHECKOV), "--directory", str(folder), "--framework", "kubernetes"),
            *("--skip-download", "--output", "json", "--compact"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "BC_SKIP_MAPPING": "TRUE"},
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: some check failed
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


UNCONFINED = """apiVersion: apps/v1
kind: Deployment
metadata: {name: unconfined, namespace: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: "ortserve:cpu"}]
"""


def test_checkov_passes_on_every_rendered_kustomization(tmp_path):
    # Each one a user applies; the base alone has no namespace (the overlays set it), which checkov's
    # "not the default namespace" check would take for the default one.
    for k in (k for k in KUSTOMIZATIONS if k != "base"):
        (tmp_path / f"{k.replace('/', '-')}.yaml").write_text(rendered_text(k))
    (tmp_path / "canary-unconfined.yaml").write_text(UNCONFINED)  # shows that checkov does fail pods
    report = checkov(tmp_path)
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
        if c["file_path"] != "/canary-unconfined.yaml"
    ]
    assert failed == []
    canary = {c["check_id"] for c in report["results"]["failed_checks"]} - {f.split()[0] for f in failed}
    assert {
        "CKV_K8S_22",
        "CKV_K8S_20",
        "CKV_K8S_8",
        "CKV_K8S_9",
    } <= canary  # read-only FS, escalation, probes
    assert report["summary"]["passed"] > 100 and report["summary"]["parsing_errors"] == 0
    for c in report["results"]["skipped_checks"]:
        assert len(c["check_result"].get("suppress_comment") or "") > 20, (
            f"{c['check_id']} skipped without a reason"
        )


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_hadolint_is_clean(dockerfile):
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "info", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_hadolint_reports_unpinned_installs(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n"
    )
    out = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True).stdout
    assert "DL3008" in out and "DL3013" in out


def lock_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lock_files_match_pyproject():
    proc = lock_check()
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_dependency_changed_without_make_lock_fails_the_check(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace('"mmh3>=5.0",', '"mmh3>=5.0",\n  "httpx>=0.27",', 1))
    proc = lock_check("--pyproject", str(changed))
    assert proc.returncode == 1
    assert "server.lock was not made from pyproject.toml as it is now: run make lock" in proc.stderr
    assert "server.lock: httpx>=0.27 is not pinned" in proc.stderr


def test_a_lock_that_breaks_a_requirement_or_lacks_hashes_fails_the_check(tmp_path):
    for lock in (ROOT / "deploy" / "requirements").glob("*.lock"):
        (tmp_path / lock.name).write_text(lock.read_text())
    server = tmp_path / "server.lock"
    lines = server.read_text().splitlines()
    (i,) = [n for n, line in enumerate(lines) if line.startswith("onnxruntime==")]
    lines[i] = "onnxruntime==1.19.0 \\"
    (j,) = [n for n, line in enumerate(lines) if line.startswith("flatbuffers==")]
    lines[j] = lines[j].rstrip(" \\")
    del lines[j + 1]  # its one hash
    server.write_text("\n".join(lines) + "\n")
    proc = lock_check("--locks", str(tmp_path))
    assert proc.returncode == 1
    assert "server.lock: onnxruntime==1.19.0 does not satisfy onnxruntime>=1.20" in proc.stderr
    assert "server.lock: flatbuffers==" in proc.stderr and "has no hash" in proc.stderr
