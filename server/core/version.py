"""A loaded model version (its sessions, batcher, stats and manifest) and a model's set of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ortserve.core.batcher import Batcher, InferResult
from ortserve.core.runtime import SessionPool
from ortserve.core.signature import Signature
from ortserve.errors import InvalidInput, quoted
from ortserve.metrics import VersionStats
from ortserve.repository.config import MODEL_FILE, ModelConfig
from ortserve.tensors import Tensor

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
