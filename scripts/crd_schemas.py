"""Turn CustomResourceDefinitions into the JSON Schema files that the manifest checks use offline.

    python scripts/crd_schemas.py CRD.yaml [CRD.yaml ...] [--out deploy/schemas]

For each version of each CRD, ``<out>/<group>/<kind>_<version>.json`` (lower case) gets the version's
``openAPIV3Schema`` as a JSON Schema (draft 2020-12) that a cluster's API server would apply, made strict the
way ``kubectl apply`` (field validation "Strict") is: an object that lists its properties refuses others
unless it says ``x-kubernetes-preserve-unknown-fields``. Kubernetes' own extensions become plain JSON
Schema (``x-kubernetes-int-or-string``: an integer or a string; ``x-kubernetes-embedded-resource``: an
object that needs apiVersion and kind); descriptions are dropped (they do not validate anything and are
most of the bytes), and a sub-schema repeated across the CRD (KServe embeds the whole PodSpec many times)
is written once under ``$defs`` and referred to. ``apiVersion``, ``kind`` and ``metadata`` are pinned to
the CRD's own.

deploy/schemas/SOURCES.md says which repository and commit each CRD came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

DROP = {"description", "example", "externalDocs"}


def _python_pattern(pattern: str) -> str:
    """A Go (RE2) pattern the way JSON Schema validators in Python read it: RE2 takes an inline flag
    such as ``(?i)`` anywhere (``^(?i)(abort|warn)?$``), Python only at the start."""
    for flag in ("(?i)", "(?s)", "(?m)"):
        if flag in pattern and not pattern.startswith(flag):
            pattern = flag + pattern.replace(flag, "", 1)
    return pattern


def convert(node: Any) -> Any:
    """One openAPIV3Schema node as JSON Schema."""
    if isinstance(node, list):
        return [convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROP or key.startswith("x-kubernetes-"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key == "nullable":
            continue  # handled below, with the type
        elif key == "pattern" and isinstance(value, str):
            out[key] = _python_pattern(value)
        else:
            out[key] = convert(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if node.get("x-kubernetes-embedded-resource"):
        out.setdefault("required", [])
        out["required"] = sorted({*out["required"], "apiVersion", "kind"})
    strict = (
        out.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )
    if strict:
        out["additionalProperties"] = False
    return out


def _canonical(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def _walk(schema: dict, visit) -> dict:
    """``schema`` with ``visit`` applied to each sub-schema (not to data such as enum or default)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _MAPS and isinstance(value, dict):
            out[key] = {name: visit(sub) for name, sub in value.items()}
        elif key in _ONE and isinstance(value, dict):
            out[key] = visit(value)
        elif key in _LISTS and isinstance(value, list):
            out[key] = [visit(sub) for sub in value]
        else:
            out[key] = value
    return out


def share(schema: dict, min_size: int = 512) -> dict:
    """``schema`` with each sub-schema that occurs more than once (and is at least ``min_size`` bytes)
    moved to ``$defs`` and replaced by a ``$ref``: the same rules, a fraction of the bytes."""
    counts: Counter[str] = Counter()

    def count(node: dict) -> dict:
        counts[_canonical(node)] += 1
        return _walk(node, count)

    count(schema)
    defs: dict[str, Any] = {}

    def rewrite(node: dict) -> dict:
        text = _canonical(node)
        if counts[text] > 1 and len(text) >= min_size:
            name = "s" + hashlib.sha256(text.encode()).hexdigest()[:12]
            if name not in defs:
                defs[name] = None  # reserved before the recursion
                defs[name] = _walk(node, rewrite)
            return {"$ref": f"#/$defs/{name}"}
        return _walk(node, rewrite)

    out = _walk(schema, rewrite)
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    return out


def schemas(crd: dict) -> dict[str, dict]:
    """File name (relative to the output folder) -> JSON Schema, for each version the CRD serves."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    out = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = convert(version["schema"]["openAPIV3Schema"])
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"const": f"{group}/{version['name']}"}
        props["kind"] = {"const": kind}
        props["metadata"] = {"type": "object"}  # checked by the Kubernetes schemas' ObjectMeta rules
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"{kind} {group}/{version['name']}"
        out[f"{group}/{kind.lower()}_{version['name']}.json"] = share(schema)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crds", nargs="+", type=Path)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "deploy" / "schemas"
    )
    args = parser.parse_args(argv)
    for path in args.crds:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            for name, schema in schemas(doc).items():
                target = args.out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"{path.name} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
