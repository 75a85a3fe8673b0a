"""A loaded model version (its sessions, batcher, stats and manifest) and a model's set of them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.core.batcher import Batcher, InferResult
from ortserve.core.runtime import SessionDefaults, SessionPool
from ortserve.core.signature import Signature
from ortserve.errors import InvalidInput, quoted
from ortserve.metrics import VersionStats
from ortserve.repository.config import MODEL_FILE, ModelConfig, MonitoringConfig
from ortserve.repository.manifest import ManifestError, read_manifest, verify_manifest
from ortserve.repository.signing import Verifier
from ortserve.tensors import Tensor

__all__ = ["Model", "ModelVersion", "open_version"]

log = logging.getLogger("ortserve.models")


@dataclass(eq=False)
class ModelVersion:
    model: str
    version: str
    path: Path
    config: ModelConfig
    pool: SessionPool
    batcher: Batcher
    stats: VersionStats
    manifest: dict[str, Any] | None
    fingerprint: tuple = ()  # the files' stamps when loaded: a change on disk is noticed by the next scan

    @property
    def signature(self) -> Signature:
        return self.pool.signature

    @property
    def sha256(self) -> str:
        if not self.manifest:
            return ""
        entry = self.manifest["files"].get(MODEL_FILE, {})
        return entry.get("sha256", "") if isinstance(entry, dict) else ""

    @property
    def providers(self) -> list[str]:
        """The execution providers the sessions really use, in order."""
        return self.pool.providers

    @property
    def instances(self) -> int:
        return self.pool.instances

    def check(self, inputs: Mapping[str, Tensor], outputs: list[str] | None = None) -> int:
        """Check a request against the signature from its tensors' headers alone (nothing is
        decoded); returns its batch size. Raises InvalidInput."""
        if outputs:
            known = self.pool.output_names
            for n in outputs:
                if n not in known:
                    raise InvalidInput(f"unknown output {quoted(n)}, expected outputs: {', '.join(known)}")
        return self.signature.validate(inputs)

    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None, priority: int
    ) -> InferResult:
        """Queue a checked, decoded request and await its answer."""
        return await self.batcher.submit(inputs, rows, deadline, priority)

    async def infer(
        self, inputs: Mapping[str, np.ndarray], deadline: float | None, priority: int
    ) -> InferResult:
        """``check`` then ``submit``, for callers that hold arrays already (the shadow mirror)."""
        return await self.submit(inputs, self.check(inputs), deadline, priority)


@dataclass(eq=False)
class Model:
    name: str
    config: ModelConfig
    versions: dict[str, ModelVersion] = field(default_factory=dict)

    def sorted_versions(self) -> list[str]:
        return sorted(self.versions, key=int)

    def default_version(self) -> str | None:
        if self.config.default_version is not None:
            return self.config.default_version
        return max(self.versions, key=int) if self.versions else None

    def take_live(self, config: ModelConfig) -> bool:
        """When ``config`` differs from the serving one only in keys that need no reload (``default_version``,
        which a promotion writes, and the ``[monitoring]`` table), take them now, reloading nothing: True
        when it did. The loaded versions' configs take the new ``[monitoring]`` too (monitoring hooks
        read it from the version that served each request)."""
        now = self.config
        rest = dataclasses.replace(config, default_version=now.default_version, monitoring=now.monitoring)
        if config == now or rest != now:
            return False
        before = self.default_version()
        self.config = dataclasses.replace(
            now, default_version=config.default_version, monitoring=config.monitoring
        )
        if config.default_version != now.default_version:
            log.info(
                "model %s: default version %s (was %s), nothing reloaded",
                self.name,
                self.default_version(),
                before,
            )
        if config.monitoring != now.monitoring:
            for mv in self.versions.values():
                mv.config = dataclasses.replace(mv.config, monitoring=config.monitoring)
            log.info(
                "model %s: [monitoring] %s (was %s), nothing reloaded",
                self.name,
                _describe(config.monitoring),
                _describe(now.monitoring),
            )
        return True


def _describe(monitoring: MonitoringConfig) -> str:
    """``payload_log_rate=1.0 drift_sample_rate=server`` (an absent key takes the server's setting)."""
    values = dataclasses.asdict(monitoring)
    return " ".join(f"{k}={'server' if v is None else v}" for k, v in values.items())


def open_version(
    path: Path,
    config: ModelConfig,
    verifier: Verifier | None,
    require_manifest: bool,
    max_elements: int,
    defaults: SessionDefaults,
) -> tuple[dict | None, SessionPool]:
    """Check a version folder (its signature before any byte of the model is parsed, then its
    manifest) and open its sessions, warmed up when the config asks. Runs off the event loop."""
    if verifier is not None:
        key = verifier.verify(path)
        log.info("%s: signature verified with %s", path, key)
    manifest = read_manifest(path)
    if manifest is None:
        if require_manifest:
            raise ManifestError(f"{path}: no manifest.json and require_manifest is set")
        log.warning("%s has no manifest.json: its files are not verified", path)
    else:
        verify_manifest(path, manifest)
    pool = SessionPool(path / MODEL_FILE, config, max_elements, defaults)
    if config.runtime.warmup:
        pool.warmup()
    return manifest, pool
