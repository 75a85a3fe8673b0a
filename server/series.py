"""Metric series that follow what is loaded, so that their number stays bounded.

Label values come only from what the server holds: models and versions that are loaded, and the
variants of the flags in force (at most ``MAX_VARIANTS`` per flag); a request for an unknown model
is counted under ``_unknown``. When a version is unloaded, a model goes away or a flag loses
variants, their series are removed (prometheus_client's ``remove_by_labels``), the shadow
comparison series included; ``generation`` tells the objects that cache children
(``VersionStats``, the shadow mirror) to resolve them again.

Under ``--workers`` metrics are in prometheus_client's multiprocess mode, which cannot remove a
series: each worker's values stay in its own file until it exits. There each worker publishes
what it holds (``live_<pid>.json`` in the metrics folder) and the supervisor's ``LiveFilter``
leaves out the series that no living worker holds. (A worker's file still grows by the series of
every version it ever served; they are dropped when the worker exits.)

``ortserve_model_load_failures_total`` and ``ortserve_model_files_changed_total`` keep their
series: they count events of versions found in the repository, which the operator controls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["LIVE_PREFIX", "LiveFilter", "Series", "forget_worker"]

LIVE_PREFIX = "live_"
UNKNOWN_MODEL = "_unknown"
# (attribute of Metrics, labels naming the version) of every family whose series follow versions
_BY_VERSION = (
    "requests",
    "request_duration",
    "queue_duration",
    "compute_duration",
    "batch_size",
    "queue_depth",
    "model_ready",
)
_SHADOW = ("shadow_requests", "shadow_rows", "shadow_top1", "shadow_max_abs_diff", "shadow_cosine")
_BY_VARIANT = ("requests", "request_duration")
_FILTERED = {  # exported family name -> the labels LiveFilter checks
    "ortserve_requests": ("version", "variant"),
    "ortserve_request_duration_seconds": ("version", "variant"),
    "ortserve_queue_duration_seconds": ("version",),
    "ortserve_compute_duration_seconds": ("version",),
    "ortserve_batch_size": ("version",),
    "ortserve_queue_depth": ("version",),
    "ortserve_model_ready": ("version",),
    "ortserve_shadow_requests": ("primary_version", "shadow_version"),
    "ortserve_shadow_rows": ("primary_version", "shadow_version"),
    "ortserve_shadow_top1_agreements": ("primary_version", "shadow_version"),
    "ortserve_shadow_max_abs_diff": ("primary_version", "shadow_version"),
    "ortserve_shadow_cosine_similarity": ("primary_version", "shadow_version"),
}


class Series:
    """What is live, and the removal of what no longer is. ``metrics`` is the ``Metrics`` object
    that owns this one (not imported: ``ortserve.metrics`` imports this module)."""

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics
        self.generation = 0
        self._versions: dict[str, set[str]] = {}
        self._variants: dict[str, set[str]] = {}  # model -> the flag variants allowed ("" always)
        self._seen: dict[str, set[str]] = {}  # model -> variant values that have series
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self._live_file = Path(folder) / f"{LIVE_PREFIX}{os.getpid()}.json" if folder else None

    @property
    def multiprocess(self) -> bool:
        return self._live_file is not None

    def saw_variant(self, model: str, variant: str) -> None:
        """A request series with this variant was made (called once per child, not per request)."""
        self._seen.setdefault(model, set()).add(variant)

    def loaded(self, model: str, version: str) -> None:
        self._versions.setdefault(model, set()).add(version)
        self.publish()

    def unloaded(self, model: str, version: str) -> None:
        """Remove the series of a version that no longer serves."""
        self._versions.get(model, set()).discard(version)
        self._remove(_BY_VERSION, {"model": model, "version": version})
        self._remove(_SHADOW, {"model": model, "primary_version": version})
        self._remove(_SHADOW, {"model": model, "shadow_version": version})
        self.publish()

    def model_gone(self, model: str) -> None:
        """Remove what is left of a model that has no version loaded any more."""
        self._versions.pop(model, None)
        self._variants.pop(model, None)
        self._seen.pop(model, None)
        self._remove(_BY_VARIANT, {"model": model})
        self.publish()

    def flags(self, variants: Mapping[str, Collection[str]]) -> None:
        """The variants each model's flag now has (a model missing here has none): the series of
        the others are removed."""
        self._variants = {model: set(names) for model, names in variants.items()}
        for model, seen in self._seen.items():
            stale = seen - self._variants.get(model, set()) - {""}
            for variant in stale:
                self._remove(_BY_VARIANT, {"model": model, "variant": variant})
            seen -= stale
        self.publish()

    def _remove(self, families: Iterable[str], labels: dict[str, str]) -> None:
        self.generation += 1
        if self.multiprocess:  # cannot be removed there: LiveFilter leaves them out instead
            return
        for name in families:
            getattr(self._metrics, name).remove_by_labels(labels)

    def live(self) -> dict[str, dict[str, list[str]]]:
        models = set(self._versions) | set(self._variants)
        return {
            m: {
                "versions": sorted(self._versions.get(m, ())),
                "variants": sorted(self._variants.get(m, ())),
            }
            for m in sorted(models)
        }

    def publish(self) -> None:
        """Write what is live for the supervisor (multiprocess mode only), atomically."""
        if self._live_file is None:
            return
        tmp = self._live_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.live()))
        os.replace(tmp, self._live_file)


class LiveFilter:
    """The supervisor's collector: the workers' merged metrics (``collector``, prometheus_client's
    MultiProcessCollector) less the series of versions and variants that no living worker holds."""

    def __init__(self, collector: Any, folder: Path) -> None:
        self._collector = collector
        self._folder = Path(folder)

    def _live(self) -> dict[str, tuple[set[str], set[str]]] | None:
        live: dict[str, tuple[set[str], set[str]]] = {}
        found = False
        for path in self._folder.glob(f"{LIVE_PREFIX}*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            found = True
            for model, held in data.items():
                versions, variants = live.setdefault(model, (set(), set()))
                versions.update(held.get("versions", ()))
                variants.update(held.get("variants", ()))
        return live if found else None

    def collect(self) -> Iterator[Any]:
        live = self._live()
        for family in self._collector.collect():
            checked = _FILTERED.get(family.name)
            if live is not None and checked:
                family.samples = [s for s in family.samples if _held(s.labels, checked, live)]
            yield family


def _held(
    labels: Mapping[str, str], checked: tuple[str, ...], live: Mapping[str, tuple[set[str], set[str]]]
) -> bool:
    model = labels.get("model", "")
    if model == UNKNOWN_MODEL:
        return True
    held = live.get(model)
    if held is None:
        return False
    versions, variants = held
    for label in checked:
        value = labels.get(label, "")
        if value and value not in (variants if label == "variant" else versions):
            return False
    return True


def forget_worker(folder: Path, pid: int) -> None:
    """Drop a dead worker's live file (its values go with prometheus_client's mark_process_dead)."""
    (Path(folder) / f"{LIVE_PREFIX}{pid}.json").unlink(missing_ok=True)
