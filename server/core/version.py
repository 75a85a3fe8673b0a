"""A loaded model version (its sessions, batcher, stats and manifest) and a model's set of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.core.batcher import Batcher, InferResult
from ortserve.core.runtime import SessionPool
from ortserve.core.signature import Signature
from ortserve.errors import InvalidInput
from ortserve.metrics import VersionStats
from ortserve.repository.config import MODEL_FILE, ModelConfig

__all__ = ["Model", "ModelVersion"]


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

    def check_outputs(self, names: list[str] | None) -> None:
        if not names:
            return
        known = self.pool.output_names
        for n in names:
            if n not in known:
                raise InvalidInput(f"unknown output '{n}', expected outputs: {', '.join(known)}")

    async def infer(
        self, inputs: dict[str, np.ndarray], deadline: float | None, priority: int
    ) -> InferResult:
        rows = self.signature.validate(inputs)
        return await self.batcher.submit(inputs, rows, deadline, priority)


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
