"""Discovery: which models and versions a repository folder holds, read fresh from disk on every scan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ortserve.repository.config import ConfigError, ModelConfig, load_model_config
from ortserve.repository.layout import CONFIG, MODEL_FILE, version_dirs

__all__ = ["ModelEntry", "scan_repository"]


@dataclass
class ModelEntry:
    """One model folder as found on disk: its config (or the error reading it) and version folders."""

    name: str
    path: Path
    config: ModelConfig | None
    error: str | None
    versions: dict[str, Path]

    def wanted(self) -> dict[str, Path]:
        if self.config is None:
            return {}
        return {v: self.versions[v] for v in self.config.versions.select(list(self.versions))}


def scan_repository(root: Path) -> dict[str, ModelEntry]:
    """Find every model folder (one holding numbered version folders with model.onnx, or a config.toml)."""
    found: dict[str, ModelEntry] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = {v: p for v, p in version_dirs(model_dir).items() if (p / MODEL_FILE).is_file()}
        if not versions and not (model_dir / CONFIG).exists():
            continue
        try:
            config, error = load_model_config(model_dir), None
        except ConfigError as e:
            config, error = None, str(e)
        found[model_dir.name] = ModelEntry(model_dir.name, model_dir, config, error, versions)
    return found
