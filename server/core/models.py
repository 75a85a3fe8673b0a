"""The loaded models: versions found in the repository, loaded (sessions, batcher, stats),
swapped in and out while serving.

A version is loaded off the event loop (manifest check, sessions, warm-up), then published
to the table requests read. A removed version leaves the table first, so new requests do not
reach it, then its batcher drains what it had already accepted, then its sessions go.

Each scan also stamps the files of every loaded version: a version whose files changed is loaded
again as a restarted server would load it (files that no longer match its manifest: refused, and
the version unloaded), so every worker of ``--workers`` takes the same decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from ortserve.core.batcher import make_batcher
from ortserve.core.runtime import SessionDefaults
from ortserve.core.table import ModelTable
from ortserve.core.tracing import NO_TRACING, Tracing
from ortserve.core.version import Model, ModelVersion, open_version
from ortserve.errors import ModelNotFound, ProviderUnavailable, quoted
from ortserve.metrics import Metrics
from ortserve.repository import MODEL_FILE, ConfigError, ModelConfig, ModelEntry, scan_repository
from ortserve.repository.config import load_model_config
from ortserve.repository.files import folder_stamp
from ortserve.repository.manifest import MANIFEST
from ortserve.repository.signing import SIGNATURE, SignatureError, Verifier

__all__ = ["Model", "ModelManager", "ModelVersion"]

log = logging.getLogger("ortserve.models")


def _fingerprint(path: Path) -> tuple:
    """Changes when a version's files are replaced or edited (a refused version is then retried,
    a loaded one loaded again): the stamps of every file, the model's and manifest's when absent."""
    return folder_stamp(path, (MODEL_FILE, MANIFEST, SIGNATURE))


class ModelManager(ModelTable):
    """The table of loaded models (its lookups: ``ModelTable``) and their lifecycle."""

    def __init__(
        self,
        root: Path,
        executor: Executor,
        metrics: Metrics,
        *,
        max_input_elements: int,
        require_manifest: bool = False,
        on_change: Callable[[str, bool], None] | None = None,
        drain_timeout: float = 30.0,
        tracing: Tracing = NO_TRACING,
        verifier: Verifier | None = None,
        sessions: SessionDefaults = SessionDefaults(),
    ) -> None:
        super().__init__()
        self._tracing = tracing
        self.root = Path(root)
        self._executor = executor
        self._metrics = metrics
        self._max_elements = max_input_elements
        self._require_manifest = require_manifest
        self._on_change = on_change or (lambda name, serving: None)
        self._drain_timeout = drain_timeout
        self._verifier = verifier  # --trusted-key: every version's signature is checked before loading
        self._sessions = sessions  # CPU fallback and the cache folder, from the server's settings
        self._refused: dict[tuple[str, str], tuple] = {}  # (model, version) -> (files, config) refused
        self._refusals: dict[tuple[str, str], Exception] = {}  # (model, version) -> why it was refused
        self._config_errors: dict[str, str] = {}
        self._refused_configs: dict[str, ModelConfig] = {}  # config changes whose versions failed to load
        self._unloaded: set[str] = set()  # models unloaded explicitly (repository API)
        self._lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    async def sync(self) -> None:
        """Bring the loaded set in line with the repository: load new versions, drop removed ones."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            entries = await loop.run_in_executor(None, scan_repository, self.root)
            self.entries = entries
            await self._check_files(entries)
            for name in sorted(set(self.models) | set(entries)):
                entry = entries.get(name)
                if entry is None or name in self._unloaded:
                    await self._retire(
                        name, set(self.models[name].versions) if name in self.models else set()
                    )
                    continue
                await self._sync_model(entry)

    async def _sync_model(self, entry: ModelEntry) -> None:
        name = entry.name
        if entry.config is None:
            if self._config_errors.get(name) != entry.error:
                log.error("model %s: config refused, keeping what is loaded: %s", name, entry.error)
                self._config_errors[name] = entry.error or ""
            return
        self._config_errors.pop(name, None)
        model = self.models.get(name)
        config = entry.config
        if model is not None:
            model.take_live(config)
        if model is not None and model.config != config:
            if self._refused_configs.get(name) != config and await self._reload(model, entry, config):
                return
            config = model.config  # refused: keep following the repository under the serving config
        if model is None:
            model = self.models[name] = Model(name, config)
        wanted = {v: entry.versions[v] for v in config.versions.select(list(entry.versions))}
        for version, path in wanted.items():
            if version in model.versions:
                continue
            mv = await self._load(name, version, path, config)
            if mv is not None:
                model.versions = {**model.versions, version: mv}
                self._on_change(name, True)
        await self._retire(name, set(model.versions) - set(wanted))

    async def _check_files(self, entries: dict[str, ModelEntry]) -> None:
        """Load again every loaded version whose files changed on disk (still in the repository:
        a removed folder is the ordinary removal)."""
        for name, model in list(self.models.items()):
            entry = entries.get(name)
            for version, mv in list(model.versions.items()):
                if entry is None or version not in entry.versions or _fingerprint(mv.path) == mv.fingerprint:
                    continue
                self._metrics.model_files_changed.labels(name, version).inc()
                what = {"model": name, "version": version}
                log.warning("model %s version %s: its files changed on disk while it served; loading it again",
                            name, version, extra={"event": "model_files_changed", **what})  # fmt: skip
                again = await self._load(name, version, mv.path, model.config)
                if again is None:
                    log.error("model %s version %s: unloaded, its changed files are refused (see above); its "
                              "other versions serve on", name, version, extra={"event": "model_files_refused", **what})  # fmt: skip
                    await self._retire(name, {version})
                    continue
                model.versions = {**model.versions, version: again}
                log.info("model %s version %s: serving from its changed files", name, version)
                await self._release(mv, succeeded=True)

    async def adopt_default(self, name: str) -> str:
        """Take ``default_version`` from the model's config.toml now, reloading nothing, when that (and
        ``[monitoring]``) is all that changed there (a promotion writes it); the default version in force
        ("": not loaded)."""
        if name in self.models:
            try:
                config = await asyncio.get_running_loop().run_in_executor(
                    None, load_model_config, self.root / name
                )
            except ConfigError as e:
                log.error("model %s: config refused, keeping the default version: %s", name, e)
                return self.default_version(name)
            async with self._lock:
                if name in self.models:
                    self.models[name].take_live(config)
        return self.default_version(name)

    async def _reload(self, model: Model, entry: ModelEntry, config: ModelConfig) -> bool:
        """Load the model's versions under its changed config.toml and swap them in. If a version
        that is serving now fails under the new config, the change is refused (False) and the
        serving versions stay."""
        name = model.name
        log.info("model %s: config.toml changed, reloading its versions", name)
        loaded: dict[str, ModelVersion] = {}
        failed: list[str] = []
        for version, path in entry.wanted().items():
            mv = await self._load(name, version, path, config)
            if mv is None:
                failed.append(version)
            else:
                loaded[version] = mv
        if any(v in model.versions for v in failed):
            self._refused_configs[name] = config
            log.error(
                "model %s: config.toml change refused: version(s) %s do not load with it; "
                "the previous config keeps serving",
                name,
                ", ".join(failed),
            )
            await asyncio.gather(*(self._release(mv, v in model.versions) for v, mv in loaded.items()))
            return False
        self._refused_configs.pop(name, None)
        self.models[name] = Model(name, config, loaded)
        self._on_change(name, bool(loaded))
        await asyncio.gather(*(self._release(mv, v in loaded) for v, mv in model.versions.items()))
        return True

    async def _retire(self, name: str, versions: set[str]) -> None:
        model = self.models.get(name)
        if model is None or not versions:
            if model is not None and not model.versions and name not in self.entries:
                del self.models[name]
            return
        gone = [model.versions[v] for v in versions]
        model.versions = {v: mv for v, mv in model.versions.items() if v not in versions}
        if not model.versions:
            self._on_change(name, False)
            if name not in self.entries or name in self._unloaded:
                del self.models[name]
        await asyncio.gather(*(self._release(mv) for mv in gone))
        if not model.versions:
            self._metrics.series.model_gone(name)

    async def _release(self, mv: ModelVersion, succeeded: bool = False) -> None:
        """Drain and unload one version, then remove its metric series. ``succeeded``: a new load
        of the same version serves now and shares its series, which must then be left alone."""
        log.info("model %s version %s: unloading (draining its queue)", mv.model, mv.version)
        await mv.batcher.close(self._drain_timeout)
        if not succeeded:
            self._metrics.series.unloaded(mv.model, mv.version)
        mv.pool.close()
        log.info("model %s version %s: unloaded", mv.model, mv.version)

    async def _load(self, name: str, version: str, path: Path, config: ModelConfig) -> ModelVersion | None:
        key = (name, version)
        fingerprint = (_fingerprint(path), config)  # new files or a new config.toml: try again
        if self._refused.get(key) == fingerprint:
            return None  # already refused and unchanged: do not retry or log again
        loop = asyncio.get_running_loop()
        stamp = fingerprint[0]  # taken before the files are read: a change while they are is seen next scan
        try:
            manifest, pool = await loop.run_in_executor(
                None, open_version, path, config, self._verifier, self._require_manifest,
                self._max_elements, self._sessions,
            )  # fmt: skip
        except Exception as e:
            self._refused[key] = fingerprint
            self._refusals[key] = e
            self._metrics.load_failures.labels(name, version).inc()
            if isinstance(e, SignatureError):
                self._metrics.signature_failures.labels(name, version, e.reason).inc()
            log.error(
                "model %s version %s: refused, other versions keep serving: %s",
                name,
                version,
                e,
                extra={"event": "version_refused", "model": name, "version": version},
            )
            return None
        self._refused.pop(key, None)
        self._refusals.pop(key, None)
        stats = self._metrics.version(name, version)
        batcher = make_batcher(
            pool,
            self._executor,
            pool.signature.max_batch_size,
            config.batching,
            stats,
            self._tracing.batcher(name, version),
        )
        stats.ready(True)
        self._metrics.series.loaded(name, version)
        batched = config.batching.enabled and pool.signature.max_batch_size
        batching = "dynamic batching" if batched else "no batching"
        log.info("model %s version %s: loaded from %s, providers %s, max_batch_size %d, %s, %d instance(s)",
                 name, version, path, ",".join(pool.providers),  # what every session really uses
                 pool.signature.max_batch_size, batching, pool.instances,
                 extra={"event": "version_loaded", "model": name, "version": version, "providers": pool.providers})  # fmt: skip
        return ModelVersion(name, version, path, config, pool, batcher, stats, manifest, stamp)

    def provider_refusals(self) -> list[str]:
        """One line for each version refused because an execution provider it asks for cannot be
        created here ("model digits version 2: asks for CUDAExecutionProvider ...")."""
        return [
            f"model {name} version {version}: {e}"
            for (name, version), e in sorted(self._refusals.items())
            if isinstance(e, ProviderUnavailable)
        ]

    # -- explicit control (repository API) -----------------------------------------------------
    async def load_model(self, name: str) -> None:
        self._unloaded.discard(name)
        await self.sync()
        if name not in self.models or not self.models[name].versions:
            raise ModelNotFound(f"model {quoted(name)}: no loadable version in the repository")

    def index(self) -> list[tuple[str, str, str, str]]:
        """Every model version in the repository or loaded, as (model, version, state, reason) with
        state READY or UNAVAILABLE; a model with no version folder gets one row with version ""."""
        rows = []
        for name in sorted(set(self.entries) | set(self.models)):
            model, entry = self.models.get(name), self.entries.get(name)
            loaded = model.versions if model is not None else {}
            found = set(entry.versions) if entry is not None else set()
            wanted = set(entry.wanted()) if entry is not None else set()
            for version in sorted(found | set(loaded), key=int):
                if version in loaded:
                    rows.append((name, version, "READY", ""))
                    continue
                if name in self._unloaded:
                    reason = "unloaded"
                elif name in self._config_errors:
                    reason = f"config refused: {self._config_errors[name]}"
                elif (name, version) in self._refused:
                    reason = f"refused at load: {self._refusals.get((name, version), 'see the server log')}"
                elif version not in wanted:
                    reason = "not selected by the version policy"
                else:
                    reason = "not loaded yet"
                rows.append((name, version, "UNAVAILABLE", reason))
            if not found and not loaded:
                rows.append((name, "", "UNAVAILABLE", self._config_errors.get(name) or "no version folder"))
        return rows

    async def unload_model(self, name: str) -> None:
        if name not in self.models and name not in self.entries:
            raise ModelNotFound(f"model {quoted(name)} is not in the repository")
        self._unloaded.add(name)
        await self.sync()

    async def close(self) -> None:
        async with self._lock:
            for name in list(self.models):
                await self._retire(name, set(self.models[name].versions))
            self.models.clear()
