"""What the status page shows about the server's state, as immutable snapshots.

``from_app`` reads a running ``App`` (its core and flag source) and must run on the event loop, where those
objects change; the page's thread then reads only the snapshot it returned. ``from_disk`` reads the repository
and the flags file instead, for the ``--workers`` supervisor, which has no core of its own: a version there is
ready when a worker reports it ready in ``ortserve_model_ready``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.ops.status.rollouts import RolloutState, read_rollouts
from ortserve.repository import (
    MODEL_CARD,
    MODEL_FILE,
    ManifestError,
    read_flags_text,
    read_manifest,
    scan_repository,
)

__all__ = [
    "Admission",
    "FlagState",
    "ModelState",
    "ServerState",
    "Split",
    "VersionState",
    "describe_flags",
    "from_app",
    "from_disk",
    "ready_in",
    "signed",
    "with_rollouts",
]

# The rollout layer's convention (ortserve.rollout.SHADOW_SUFFIX), read here from the document's text.
SHADOW_SUFFIX = ".shadow"


@dataclass(frozen=True)
class VersionState:
    version: str
    ready: bool
    default: bool = False
    sha256: str = ""  # model.onnx's, from the manifest ("" without one)
    signed: str = ""  # "yes", "no", or "" when there is no manifest to say
    card: bool = False  # the version has a MODEL_CARD.md
    routes: tuple[str, ...] = ()  # "<flag>:<variant>" for each flag variant naming it
    reason: str = ""  # why it is not ready


@dataclass(frozen=True)
class ModelState:
    name: str
    default_version: str
    versions: tuple[VersionState, ...]


@dataclass(frozen=True)
class Split:
    variant: str
    version: str  # "" for a shadow flag's "off" variant
    percent: float


@dataclass(frozen=True)
class FlagState:
    key: str
    model: str
    shadow: bool
    enabled: bool
    default_variant: str
    variants: tuple[tuple[str, str], ...]  # (variant, version)
    splits: tuple[Split, ...] = ()  # a fractional split at the top of its targeting
    rules: str = ""  # the targeting as compact JSON when it is more than a split


@dataclass(frozen=True)
class Admission:
    """The admission bounds and what is held against them now (``ortserve.ops.resources``; 0: no bound or not
    known). Under ``--workers``: the sums over the workers."""

    inflight_bytes: int = 0  # --max-inflight-bytes as in force
    rpcs: int = 0  # --max-concurrent-rpcs as in force
    rpcs_in_flight: int | None = None  # None where not known (the supervisor)
    draining: bool = False  # SIGTERM came: health NOT_SERVING, new RPCs refused UNAVAILABLE


@dataclass(frozen=True)
class ServerState:
    mode: str  # "server", or "supervisor of N workers"
    models: tuple[ModelState, ...] = ()
    flags: tuple[FlagState, ...] = ()
    flags_path: str = ""
    flags_revision: int | None = None  # accepted documents (None: not known here)
    flags_error: str = ""
    notes: tuple[str, ...] = ()
    admission: Admission = field(default_factory=Admission)
    rollouts: tuple[RolloutState, ...] = ()  # ortserve.ops.status.rollouts.with_rollouts adds them
    taken: float = field(default_factory=time.time)


def signed(manifest: Mapping[str, Any] | None) -> str:
    """Whether a version's manifest records a signature: "yes", "no", or "" with no manifest. Signing arrives
    with the security work; until the repository answers this itself, a ``signature`` entry or a signature
    file listed in the manifest (``*.sig``, ``*.sigstore``, ``*.sigstore.json``) counts."""
    if not manifest:
        return ""
    files = manifest.get("files") or {}
    listed = any(str(n).endswith((".sig", ".sigstore", ".sigstore.json")) for n in files)
    return "yes" if manifest.get("signature") or listed else "no"


def _sha256(manifest: Mapping[str, Any] | None) -> str:
    entry = ((manifest or {}).get("files") or {}).get(MODEL_FILE)
    return str(entry.get("sha256", "")) if isinstance(entry, dict) else ""


def _has_card(manifest: Mapping[str, Any] | None, folder: Path) -> bool:
    files = (manifest or {}).get("files") or {}
    return MODEL_CARD in files or (folder / MODEL_CARD).is_file()


def describe_flags(text: str) -> tuple[FlagState, ...]:
    """The routing flags of a flagd document, for display (the server validated it already; anything odd is
    shown as it is rather than refused)."""
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        return ()
    flags = doc.get("flags") if isinstance(doc, dict) else None
    out = []
    for key, spec in sorted(flags.items()) if isinstance(flags, dict) else ():
        if not isinstance(spec, dict):
            continue
        raw = spec.get("variants")
        variants: dict[str, Any] = raw if isinstance(raw, dict) else {}
        targeting = spec.get("targeting") or {}
        splits: tuple[Split, ...] = ()
        rules = ""
        fractional = (
            targeting.get("fractional") if isinstance(targeting, dict) and len(targeting) == 1 else None
        )
        if isinstance(fractional, list) and fractional and all(isinstance(b, list) for b in fractional):
            buckets = [b for b in fractional if b and isinstance(b[0], str)]
            weights = [float(b[1]) if len(b) > 1 and isinstance(b[1], (int, float)) else 1.0 for b in buckets]
            total = sum(weights) or 1.0
            splits = tuple(
                Split(b[0], str(variants.get(b[0], "?")), 100.0 * w / total)
                for b, w in zip(buckets, weights, strict=True)
            )
        elif targeting:
            rules = json.dumps(targeting, separators=(",", ":"), sort_keys=True)
        shadow = key.endswith(SHADOW_SUFFIX)
        out.append(
            FlagState(
                key,
                key[: -len(SHADOW_SUFFIX)] if shadow else key,
                shadow,
                spec.get("state", "ENABLED") == "ENABLED",
                str(spec.get("defaultVariant", "")),
                tuple((str(k), str(v)) for k, v in variants.items()),
                splits,
                rules,
            )
        )
    return tuple(out)


def _routes(flags: tuple[FlagState, ...]) -> dict[tuple[str, str], tuple[str, ...]]:
    found: dict[tuple[str, str], list[str]] = {}
    for f in flags:
        for variant, version in f.variants:
            found.setdefault((f.model, version), []).append(f"{f.key}:{variant}")
    return {k: tuple(v) for k, v in found.items()}


def from_app(app: Any) -> ServerState:
    """A snapshot of a running App (its ``core`` and ``flags``); call it on the event loop."""
    core, source = app.core, app.flags
    if core is None or source is None:
        return ServerState("server", notes=("starting: loading the model repository",))
    flags = describe_flags(source.flags.text)
    routes = _routes(flags)
    loaded = {(mv.model, mv.version): mv for mv in core.versions()}
    defaults = {m.name: m.default_version for m in core.list_models()}
    by_model: dict[str, list[VersionState]] = {}
    for model, version, state, reason in core.index():
        if not version:
            by_model.setdefault(model, [])
            continue
        mv = loaded.get((model, version))
        manifest = mv.manifest if mv is not None else None
        by_model.setdefault(model, []).append(
            VersionState(
                version,
                state == "READY",
                defaults.get(model) == version,
                _sha256(manifest),
                signed(manifest),
                mv is not None and _has_card(manifest, mv.path),
                routes.get((model, version), ()),
                reason,
            )
        )
    models = tuple(ModelState(n, defaults.get(n, ""), tuple(v)) for n, v in sorted(by_model.items()))
    inflight = app.inflight
    return ServerState(
        "server" if app.worker is None else f"worker {app.worker}",
        models,
        flags,
        str(source.path),
        source.revision,
        source.last_error,
        admission=Admission(
            core.budget.limit, inflight.limit, inflight.count, bool(getattr(app, "draining", inflight.closed))
        ),
    )


def from_disk(
    repo: Path,
    flags_file: Path,
    ready: Callable[[str, str], bool],
    workers: int,
    admission: Admission | None = None,
) -> ServerState:
    """The repository and flags file as the supervisor sees them; ``ready(model, version)`` from the workers'
    metrics; ``admission``: the workers' bounds summed. Off the event loop (the supervisor has none)."""
    flags_text = read_flags_text(flags_file) or ""
    flags = describe_flags(flags_text)
    routes = _routes(flags)
    models = []
    for name, entry in scan_repository(Path(repo)).items():
        default = entry.config.default_version if entry.config is not None else None
        ready_versions = [v for v in entry.versions if ready(name, v)]
        default = default or (max(ready_versions, key=int) if ready_versions else "")
        versions = []
        for version, folder in sorted(entry.versions.items(), key=lambda kv: int(kv[0])):
            try:
                manifest = read_manifest(folder)
            except ManifestError:
                manifest = None
            up = ready(name, version)
            reason = "" if up else (entry.error or "not ready in any worker (the workers' logs say why)")
            versions.append(
                VersionState(
                    version,
                    up,
                    version == default,
                    _sha256(manifest),
                    signed(manifest),
                    _has_card(manifest, folder),
                    routes.get((name, version), ()),
                    reason,
                )
            )
        models.append(ModelState(name, default, tuple(versions)))
    note = (
        f"{workers} worker processes; this page is the supervisor's: versions and flags read from the "
        "repository and the flags file, readiness and traffic from the workers' summed metrics"
    )
    return ServerState(
        f"supervisor of {workers} workers",
        tuple(models),
        flags,
        str(flags_file),
        notes=(note,),
        admission=admission or Admission(),
    )


def ready_in(registry: Any) -> set[tuple[str, str]]:
    """The (model, version) pairs ``ortserve_model_ready`` reports ready in a metrics registry (the workers'
    summed metrics, for the supervisor)."""
    ready = set()
    for family in registry.collect():
        if family.name == "ortserve_model_ready":
            ready |= {(s.labels["model"], s.labels["version"]) for s in family.samples if s.value > 0}
    return ready


def with_rollouts(source: Callable[[], ServerState], root: Path) -> Callable[[], ServerState]:
    """``source``'s snapshots with the rollouts of the folder ``root`` added, read where the snapshot is asked
    for (the page's thread, never the event loop)."""

    def snapshot() -> ServerState:
        return dataclasses.replace(source(), rollouts=read_rollouts(root))

    return snapshot
