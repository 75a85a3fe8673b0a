"""``MODEL_CARD.md``: why a version exists, written for a person who never ran the tool that made it.

A tool fills a :class:`ModelCard` (``ortserve-optimize`` does, from its report) and hands it to
:func:`ortserve.repository.publish_version`, which renders it beside ``model.onnx`` with the version's number
filled in and lists it in the manifest, so that the server's sha256 check at load covers the card as it covers
the model. The server serves it as it is (Admin ``GetModelCard``) through :func:`read_model_card`, which checks it
against the manifest again. ::

    card = ModelCard("digits", "int8-static", "Static INT8 of version 1.", intended_use="...")
    publish_version(repo, "digits", model_bytes, extra, card=card)      # writes <n>/MODEL_CARD.md
    read_model_card(repo / "digits" / "3", read_manifest(repo / "digits" / "3"))

The sections, in this order: summary, intended use, inputs and outputs, source and lineage, data, results
against the parent, gates, known limitations. Empty sections are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.repository.layout import MODEL_CARD
from ortserve.repository.manifest import ManifestError

__all__ = ["MAX_CARD_BYTES", "MODEL_CARD", "ModelCard", "read_model_card", "render_model_card"]

MAX_CARD_BYTES = 1 << 20  # a card is a page of text; more is refused rather than sent over gRPC


@dataclass
class ModelCard:
    model: str
    title: str  # what this version is in a few words, e.g. the variant name "int8-static"
    summary: str  # one paragraph: what it is, where it comes from, whether it serves
    intended_use: str = ""
    inputs: list[tuple[str, str, str]] = field(default_factory=list)  # (name, dtype, shape)
    outputs: list[tuple[str, str, str]] = field(default_factory=list)
    lineage: list[tuple[str, str]] = field(default_factory=list)  # (what, value): source, parent, steps...
    data: list[tuple[str, str]] = field(default_factory=list)  # (used for, description)
    results: list[list[str]] = field(default_factory=list)  # a table; the first row is the header
    gates: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # (gate, threshold, measured, result)
    limitations: list[str] = field(default_factory=list)
    version: str = ""  # filled in by publish_version


def _cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    head, *body = [[_cell(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def render_model_card(card: ModelCard) -> str:
    """The card as Markdown (deterministic: the same card gives the same bytes)."""
    where = f"{card.model} version {card.version}" if card.version else card.model
    out = [f"# {where}: {card.title}", "", card.summary.strip(), ""]

    def section(title: str, lines: list[str]) -> None:
        if lines:
            out.extend([f"## {title}", "", *lines, ""])

    section("Intended use", [card.intended_use.strip()] if card.intended_use.strip() else [])
    tensors = [("", "name", "dtype", "shape")]
    tensors += [("input", *t) for t in card.inputs] + [("output", *t) for t in card.outputs]
    section("Inputs and outputs", _table(tensors) if len(tensors) > 1 else [])
    section("Source and lineage", [f"- **{_cell(k)}**: {v}" for k, v in card.lineage])
    section("Data", [f"- **{_cell(k)}**: {v}" for k, v in card.data])
    section("Results against the parent", _table(card.results) if len(card.results) > 1 else [])
    gates = [("gate", "threshold", "measured", "result"), *card.gates]
    section("Gates", _table(gates) if card.gates else [])
    section("Known limitations", [f"- {item}" for item in card.limitations])
    return "\n".join(out).rstrip() + "\n"


def read_model_card(version_dir: Path, manifest: dict[str, Any] | None) -> str | None:
    """The card of a version folder (None when it has none). When the manifest lists the card, its sha256 must
    match (ManifestError otherwise): the card a server shows is the one that was published."""
    path = Path(version_dir) / MODEL_CARD
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_CARD_BYTES:
        raise ManifestError(
            f"{path}: {path.stat().st_size} bytes, more than a card may have ({MAX_CARD_BYTES})"
        )
    data = path.read_bytes()
    entry = (manifest or {}).get("files", {}).get(MODEL_CARD)
    if isinstance(entry, dict) and entry.get("sha256"):
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry["sha256"]:
            raise ManifestError(f"{path}: sha256 {actual[:16]}…, manifest says {str(entry['sha256'])[:16]}…")
    return data.decode("utf-8", errors="replace")
