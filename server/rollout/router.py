"""Routing: which loaded version serves a request (and which one, if any, shadows it), from
the flags; and the flags' life: loaded from a file, reloaded when it changes, replaced by the
Admin service.

    router = Router(models)
    route = router.route(request)        # Route(version=ModelVersion, variant="int8", shadow=None)

Precedence for a request to model M:
  1. an explicit version in the request: that version, no flag, no shadow;
  2. the ``x-variant`` attribute (gRPC metadata / V2 parameter): that variant of flag M, even
     when the flag is DISABLED (it is for testing a variant by name); unknown: INVALID_ARGUMENT;
  3. flag M evaluated on the request's targeting key and attributes (DISABLED: its default
     variant, the kill switch); without a targeting key a random one, so a random bucket;
  4. no flag M: the model's default version.
The shadow comes from flag ``M.shadow`` evaluated on the same context; "" or the primary's
own version means none.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ortserve.core.models import ModelManager, ModelVersion
from ortserve.errors import InvalidInput, ServeError
from ortserve.metrics import Metrics
from ortserve.repository.files import file_stamp, write_atomic
from ortserve.rollout.flags import SHADOW_SUFFIX, Flag, FlagsError, FlagSet, check_versions, parse_flags

if TYPE_CHECKING:
    from ortserve.core.core import InferRequest

__all__ = ["OVERRIDE_ATTRIBUTE", "FlagSource", "Route", "Router"]

log = logging.getLogger("ortserve.flags")

OVERRIDE_ATTRIBUTE = "x-variant"


@dataclass(slots=True, frozen=True)
class Route:
    version: ModelVersion
    variant: str = ""
    shadow: ModelVersion | None = None


@dataclass(slots=True, frozen=True)
class _ModelFlags:
    primary: Flag | None
    shadow: Flag | None


def _by_model(flags: FlagSet) -> dict[str, _ModelFlags]:
    """Flags grouped by the model they would route: key M (primary) and M.shadow."""
    names = {k.removesuffix(SHADOW_SUFFIX) for k in flags.flags}
    return {n: _ModelFlags(flags.flags.get(n), flags.flags.get(n + SHADOW_SUFFIX)) for n in names}


class Router:
    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self.flags = FlagSet.empty()
        self._by_model: dict[str, _ModelFlags] = {}

    def install(self, flags: FlagSet) -> None:
        """Swap in new flags. One assignment each: a request routes on the old or the new set."""
        self._by_model = _by_model(flags)
        self.flags = flags

    def _fallback(self, model: str, flag: Flag) -> tuple[ModelVersion, str]:
        """The flag's variant names a version unloaded since the flags were checked: its default
        variant serves, else the model's default version, rather than failing that share of traffic."""
        try:
            return self.models.get(model, flag.variants[flag.default_variant]), flag.default_variant
        except ServeError:
            return self.models.get(model), ""

    def route(self, request: InferRequest) -> Route:
        models = self.models
        if request.version:
            return Route(models.get(request.model, request.version))
        rules = self._by_model.get(request.model)
        if rules is None:
            return Route(models.get(request.model))
        key = request.targeting_key or f"{random.getrandbits(64):016x}"
        attributes = request.attributes
        flag = rules.primary
        if flag is None:
            mv, variant = models.get(request.model), ""
        else:
            variant = attributes.get(OVERRIDE_ATTRIBUTE, "")
            if variant:
                if variant not in flag.variants:
                    raise InvalidInput(
                        f"{OVERRIDE_ATTRIBUTE} '{variant}' is not a variant of flag '{flag.key}'; "
                        f"variants: {', '.join(flag.variants)}"
                    )
                mv = models.get(request.model, flag.variants[variant])  # asked for by name: no fallback
            else:
                variant = flag.evaluate(key, attributes)
                try:
                    mv = models.get(request.model, flag.variants[variant])
                except ServeError:
                    mv, variant = self._fallback(request.model, flag)
        if rules.shadow is None:
            return Route(mv, variant)
        shadow_version = rules.shadow.variants[rules.shadow.evaluate(key, attributes)]
        if not shadow_version or shadow_version == mv.version:
            return Route(mv, variant)
        try:
            shadow = models.get(request.model, shadow_version)
        except ServeError:  # unloaded since the flags were checked: the caller must not notice
            return Route(mv, variant)
        return Route(mv, variant, shadow)


class FlagSource:
    """The flags file behind a Router: loaded at start, polled for changes, replaced by Admin.
    Every document is validated (JSON, schema, operators, weights, loaded versions) before it is
    installed; a refused one is logged with its reason and counted, and the last good flags stay."""

    def __init__(self, path: Path, router: Router, metrics: Metrics) -> None:
        self.path = Path(path)
        self.router = router
        self.metrics = metrics
        self.revision = 0  # accepted documents so far
        self.last_error = ""
        self._stamp: tuple[int, int, int] | None = None
        # A file refused for naming versions not loaded yet is retried when the loaded set changes:
        # a version and the flags that route to it are often published together.
        self._retry: tuple[bytes, dict[str, frozenset[str]]] | None = None
        self._announced = False
        self._lock = asyncio.Lock()

    def _loaded(self) -> dict[str, frozenset[str]]:
        models = self.router.models
        loaded = {name: frozenset(m.versions) for name, m in models.models.items()}
        for name in models.entries:
            loaded.setdefault(name, frozenset())
        return loaded

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
        self.revision += 1
        self.last_error = ""
        self.metrics.flags_loads.labels(source).inc()
        log.info(
            "flags loaded from %s (revision %d): %s",
            source if source == "admin" else self.path,
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

    async def replace(self, text: str) -> FlagSet:
        """Validate, write atomically to the flags file (so a restart keeps them), install.
        Raises FlagsError, with nothing changed, when the document is refused."""
        async with self._lock:
            try:
                flags = self.validate(text)
            except FlagsError as e:
                self._refuse(e, "admin")
                raise
            await asyncio.to_thread(write_atomic, self.path, flags.text)
            self._stamp, self._retry = file_stamp(self.path), None
            self._accept(flags, "admin")
            return flags
