"""The flags document as a file: ``<repo>/flags.json`` (OpenFeature flagd JSON), read and written whole, and
a builder for the common document, a model's canary::

    doc = flags_document({"digits": canary_flag("1", "2", 10, candidate_variant="int8")})
    write_flags_text(flags_path(Path("models")), flags_text(doc))

What the flags mean (the JSONLogic targeting, fractional bucketing, checks against loaded versions) is
``ortserve.rollout.flags``'s business; this module only knows the file and the document's outer shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ortserve.repository.files import write_atomic
from ortserve.repository.layout import FLAGS_FILE

__all__ = ["canary_flag", "flags_document", "flags_path", "flags_text", "read_flags_text", "write_flags_text"]


def flags_path(repo: Path) -> Path:
    """Where a repository keeps its routing flags."""
    return Path(repo) / FLAGS_FILE


def read_flags_text(path: Path) -> str | None:
    """The file's text, or None when there is no file."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None


def write_flags_text(path: Path, text: str) -> None:
    """Replace the flags file atomically. ValueError (and nothing written) unless ``text`` is a JSON object
    with a ``flags`` object: a reader must never see a file that is not a flags document."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("flags"), dict):
        raise ValueError(f'{path}: expected a JSON object with a "flags" object')
    write_atomic(Path(path), text)


def flags_document(flags: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{"flags": {...}}`` around flag definitions keyed by flag name (a model's flag is named after it)."""
    return {"flags": {name: dict(flag) for name, flag in flags.items()}}


def flags_text(doc: Mapping[str, Any]) -> str:
    """The document as the file holds it: indented JSON, keys in the order given, a final newline."""
    return json.dumps(doc, indent=2) + "\n"


def canary_flag(
    stable: str,
    candidate: str,
    percent: int,
    *,
    stable_variant: str = "current",
    candidate_variant: str = "candidate",
) -> dict[str, Any]:
    """A model's flag sending ``percent`` of targeting keys (sticky, by fractional bucketing) to version
    ``candidate`` and the rest to ``stable``, which is also what serves when the flag is disabled."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"canary percent: expected an integer from 0 to 100, got {percent!r}")
    if candidate_variant == stable_variant:
        candidate_variant = f"{candidate_variant}-{candidate}"
    return {
        "state": "ENABLED",
        "defaultVariant": stable_variant,
        "variants": {stable_variant: str(stable), candidate_variant: str(candidate)},
        "targeting": {"fractional": [[stable_variant, 100 - percent], [candidate_variant, percent]]},
    }
