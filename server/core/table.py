"""The table of loaded models that requests read: model name -> ``Model`` (its loaded versions and
config), and the repository's entries; ``ModelManager`` (core.models) fills it while serving."""

from __future__ import annotations

from ortserve.core.version import Model, ModelVersion
from ortserve.errors import ModelNotFound, quoted
from ortserve.repository import ModelEntry

__all__ = ["ModelTable"]


class ModelTable:
    def __init__(self) -> None:
        self.models: dict[str, Model] = {}
        self.entries: dict[str, ModelEntry] = {}

    # -- lookups (hot path) --------------------------------------------------------------------
    def not_loaded_message(self, model: str) -> str:
        """The error for a model that is not loaded. It names no other model: which models a
        server holds is for the listing RPCs (and their access rules) to tell."""
        return f"model {quoted(model)} is not loaded"

    def get(self, model: str, version: str = "") -> ModelVersion:
        m = self.models.get(model)
        if m is None or not m.versions:
            raise ModelNotFound(self.not_loaded_message(model))
        if not version:
            version = m.default_version() or ""
            mv = m.versions.get(version)
            if mv is None:
                raise ModelNotFound(
                    f"model {quoted(model)}: default version {version} is not loaded; "
                    f"loaded versions: {', '.join(m.sorted_versions())}"
                )
            return mv
        mv = m.versions.get(version)
        if mv is None:
            raise ModelNotFound(
                f"model {quoted(model)} has no loaded version {quoted(version)}; "
                f"loaded versions: {', '.join(m.sorted_versions())}"
            )
        return mv

    def ready_models(self) -> list[str]:
        return sorted(name for name, m in self.models.items() if m.versions)

    def is_loaded(self, model: str) -> bool:
        """True when the model has at least one loaded version."""
        m = self.models.get(model)
        return m is not None and bool(m.versions)

    def loaded(self, model: str) -> list[ModelVersion]:
        """The model's loaded versions in ascending order ([] when none)."""
        m = self.models.get(model)
        return [m.versions[v] for v in m.sorted_versions()] if m is not None else []

    def default_version(self, model: str) -> str:
        """The version a request naming none gets ("" when the model has none loaded)."""
        m = self.models.get(model)
        return (m.default_version() or "") if m is not None else ""

    def loaded_versions(self) -> dict[str, frozenset[str]]:
        """Model name -> its loaded versions, for every model loaded or found in the repository."""
        loaded = {name: frozenset(m.versions) for name, m in self.models.items()}
        for name in self.entries:
            loaded.setdefault(name, frozenset())
        return loaded
