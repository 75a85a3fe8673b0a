"""The flags' life: loaded from a file at start, reloaded when it changes, replaced by the Admin
service, edited by the rollout controller. Every document is validated before it is installed in the
``FlagRouter``; a refused one is logged with its reason and counted, and the last good flags keep routing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ortserve.core import ModelManager
from ortserve.errors import FlagsError
from ortserve.metrics import Metrics
from ortserve.repository.files import file_stamp, write_atomic
from ortserve.repository.flagsdoc import flags_text
from ortserve.rollout.flags import SHADOW_SUFFIX, FlagSet, check_versions, parse_flags
from ortserve.rollout.router import FlagRouter

__all__ = ["FlagSource"]

log = logging.getLogger("ortserve.flags")


class FlagSource:
    """The flags file behind a FlagRouter. Every document is validated (JSON, schema, operators,
    weights, loaded versions) before it is installed."""

    def __init__(self, path: Path, router: FlagRouter, models: ModelManager, metrics: Metrics) -> None:
        self.path = Path(path)
        self.router = router
        self.models = models
        self.metrics = metrics
        self.revision = 0  # accepted documents so far
        self.last_error = ""
        self._stamp: tuple[int, int, int] | None = None
        # A file refused for naming versions not loaded yet is retried when the loaded set changes:
        # a version and the flags that route to it are often published together.
        self._retry: tuple[bytes, dict[str, frozenset[str]]] | None = None
        self._announced = False
        self._lock = asyncio.Lock()

    @property
    def flags(self) -> FlagSet:
        return self.router.flags

    def _loaded(self) -> dict[str, frozenset[str]]:
        return self.models.loaded_versions()

    def validate(self, text: str | bytes) -> FlagSet:
        flags = parse_flags(text)
        check_versions(flags, self._loaded())
        return flags

    def _refuse(self, error: FlagsError, source: str) -> None:
        self.last_error = f"{error.reason}: {error}"
        self.metrics.flags_rejected.labels(error.reason).inc()
        log.error(
            "flags from %s refused, the last good flags keep routing: %s",
            source,
            error,
            extra={"event": "flags_refused", "reason": error.reason},
        )

    def _accept(self, flags: FlagSet, source: str) -> None:
        self.router.install(flags)
        # the variants requests are now counted under; the series of the others go
        self.metrics.series.flags(
            {key: flag.variants for key, flag in flags.flags.items() if not key.endswith(SHADOW_SUFFIX)}
        )
        self.revision += 1
        self.last_error = ""
        self.metrics.flags_loads.labels(source).inc()
        log.info(
            "flags loaded from %s (revision %d): %s",
            source if source != "file" else self.path,
            self.revision,
            ", ".join(sorted(flags.flags)) or "none",
            extra={"event": "flags_loaded", "revision": self.revision},
        )

    async def load(self) -> bool:
        """(Re)load the file if it changed since the last look; True when new flags went in."""
        async with self._lock:
            stamp = file_stamp(self.path)
            if stamp is None and not self._announced:
                log.info("no flags file at %s: requests go to default versions until one appears", self.path)
            self._announced = True
            if stamp == self._stamp:
                if self._retry is None or self._retry[1] == self._loaded():
                    return False
                text = self._retry[0]
            else:
                self._stamp = stamp
                if stamp is None:
                    log.warning("flags file %s is gone: the loaded flags keep routing", self.path)
                    return False
                try:
                    text = await asyncio.to_thread(self.path.read_bytes)
                except OSError as e:
                    self._refuse(FlagsError("io", f"cannot read {self.path}: {e}"), "file")
                    return False
            self._retry = None
            try:
                flags = self.validate(text)
            except FlagsError as e:
                if e.reason == "version":
                    self._retry = (text, self._loaded())
                self._refuse(e, "file")
                return False
            self._accept(flags, "file")
            return True

    async def replace(self, text: str, source: str = "admin") -> FlagSet:
        """Validate, write atomically to the flags file (so a restart keeps them), install.
        Raises FlagsError, with nothing changed, when the document is refused."""
        async with self._lock:
            return await self._replace(text, source)

    async def edit(self, change: Callable[[dict[str, Any]], None], source: str = "rollout") -> FlagSet:
        """Change the document in force and install the result like ``replace``: ``change`` edits the
        parsed ``{"flags": {...}}`` in place. The base is the flags file as it is now (another process may
        have written it since the last reload), or the loaded flags when the file is gone or refused, so
        that an edit (a rollback) never fails because of someone else's bad file."""
        async with self._lock:
            text = await asyncio.to_thread(_read_text, self.path)
            doc = (_document(text) if text is not None else {}) or _document(self.flags.text)
            before = json.loads(json.dumps(doc["flags"]))
            change(doc)
            changed = {k for k in set(before) | set(doc["flags"]) if before.get(k) != doc["flags"].get(k)}
            return await self._replace(flags_text(doc), source, changed)

    async def _replace(self, text: str, source: str, only: set[str] | None = None) -> FlagSet:
        """``only``: check just these flags against the loaded versions (an edit must not be blocked by
        another flag naming a version unloaded since: the router falls back for that one)."""
        try:
            if only is None:
                flags = self.validate(text)
            else:
                flags = parse_flags(text)
                check_versions(FlagSet({k: f for k, f in flags.flags.items() if k in only}), self._loaded())
        except FlagsError as e:
            self._refuse(e, source)
            raise
        await asyncio.to_thread(write_atomic, self.path, flags.text)
        self._stamp, self._retry = file_stamp(self.path), None
        self._accept(flags, source)
        return flags


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _document(text: str) -> dict[str, Any]:
    """The parsed flags document ({} when it is not one; {"flags": {}} for no text at all)."""
    if not text.strip():
        return {"flags": {}}
    try:
        doc = json.loads(text)
        parse_flags(text)
    except (ValueError, FlagsError):
        return {}
    return doc if isinstance(doc, dict) and isinstance(doc.get("flags"), dict) else {}
