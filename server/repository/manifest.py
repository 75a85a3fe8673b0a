"""The version manifest: ``<repo>/<model>/<version>/manifest.json``.

``optimize`` writes it when it publishes a version; the server verifies it at load. The
``files`` table is what the server checks (sha256 and size of every listed file); the
rest (parent, recipe, validation and benchmark figures, library versions...) is
provenance for people and tools.

    {"format": 1,
     "files": {"model.onnx": {"sha256": "…", "size": 1234}},
     "parent": "1", "created": "2026-11-26T03:00:00Z", ...}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ortserve.repository.files import write_atomic
from ortserve.repository.layout import MANIFEST

FORMAT = 1

__all__ = ["MANIFEST", "ManifestError", "file_digest", "read_manifest", "verify_manifest", "write_manifest"]


class ManifestError(Exception):
    """A version's files do not match its manifest (a file missing, another size or sha256), or the
    manifest is unreadable. The version is refused at load (``model X version N: refused``, counted in
    ``ortserve_model_load_failures_total``); the other versions keep serving.

    What to do: a version folder is immutable once published: publish a new version (``ortserve-optimize``
    or ``ortserve.repository.publish_version``) instead of editing files in place; if the files were
    damaged, restore them from where they came from."""


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(
    version_dir: Path, extra: dict[str, Any] | None = None, files: list[str] | None = None
) -> dict:
    """Hash the version's files (all regular files but the manifest, unless named) and write the manifest.

    The JSON is written with sorted keys so that the same content gives the same bytes.
    """
    version_dir = Path(version_dir)
    names = (
        files
        if files is not None
        else sorted(
            p.relative_to(version_dir).as_posix()
            for p in version_dir.rglob("*")
            if p.is_file() and p.name != MANIFEST
        )
    )
    manifest: dict[str, Any] = dict(extra or {})
    manifest["format"] = FORMAT
    manifest["files"] = {
        n: {"sha256": file_digest(version_dir / n), "size": (version_dir / n).stat().st_size} for n in names
    }
    write_atomic(version_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(version_dir: Path) -> dict[str, Any] | None:
    path = Path(version_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path}: unreadable manifest: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ManifestError(f"{path}: expected an object with a 'files' table")
    return data


def verify_manifest(version_dir: Path, manifest: dict[str, Any]) -> None:
    """Raise ManifestError naming the first file whose size or sha256 differs from the manifest."""
    for name, entry in manifest["files"].items():
        path = Path(version_dir) / name
        if not path.is_file():
            raise ManifestError(f"{path}: listed in the manifest but missing")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not expected:
            raise ManifestError(f"{path}: manifest entry has no sha256")
        size = entry.get("size")
        if size is not None and path.stat().st_size != size:
            raise ManifestError(f"{path}: size {path.stat().st_size} bytes, manifest says {size}")
        actual = file_digest(path)
        if actual != expected:
            raise ManifestError(f"{path}: sha256 {actual[:16]}…, manifest says {expected[:16]}…")
