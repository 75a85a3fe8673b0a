"""Flag-driven routing: which loaded version serves a request (and which one, if any, shadows it).
It is the core's ``Routing`` strategy when flags are in use.

    router = FlagRouter(models)
    router.install(parse_flags(text))
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

A flag whose targeting fails when evaluated serves its default variant: the request never sees
the failure, ``ortserve_flags_evaluation_errors_total{flag}`` counts it and the log says so at
most once a minute per flag (with the count since).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from ortserve.core import InferRequest, ModelManager, ModelVersion, Route
from ortserve.errors import InvalidInput, ServeError, quoted
from ortserve.metrics import Metrics
from ortserve.rollout.flags import SHADOW_SUFFIX, Flag, FlagSet

__all__ = ["OVERRIDE_ATTRIBUTE", "EvaluationErrors", "FlagRouter"]

OVERRIDE_ATTRIBUTE = "x-variant"
LOG_INTERVAL_S = 60.0

log = logging.getLogger("ortserve.flags")


class EvaluationErrors:
    """Counts failed evaluations per flag and logs them at most once per ``interval`` per flag."""

    def __init__(self, metrics: Metrics | None, interval: float = LOG_INTERVAL_S) -> None:
        self._metrics = metrics
        self._interval = interval
        self._last: dict[str, tuple[float, int]] = {}  # flag -> (last logged, errors since)

    def __call__(self, flag: Flag, error: Exception) -> None:
        if self._metrics is not None:
            self._metrics.flags_evaluation_errors.labels(flag.key).inc()
        now = time.monotonic()
        logged, since = self._last.get(flag.key, (-self._interval, 0))
        if now - logged < self._interval:
            self._last[flag.key] = (logged, since + 1)
            return
        self._last[flag.key] = (now, 0)
        log.error(
            "flag %s: targeting failed (%s: %s), serving its default variant %s%s",
            quoted(flag.key),
            type(error).__name__,
            quoted(str(error), 200),
            quoted(flag.default_variant),
            f"; {since} more failures since the last report" if since else "",
            extra={"event": "flag_evaluation_failed", "flag": flag.key},
        )


@dataclass(slots=True, frozen=True)
class _ModelFlags:
    primary: Flag | None
    shadow: Flag | None


def _by_model(flags: FlagSet) -> dict[str, _ModelFlags]:
    """Flags grouped by the model they would route: key M (primary) and M.shadow."""
    names = {k.removesuffix(SHADOW_SUFFIX) for k in flags.flags}
    return {n: _ModelFlags(flags.flags.get(n), flags.flags.get(n + SHADOW_SUFFIX)) for n in names}


class FlagRouter:
    def __init__(self, models: ModelManager, metrics: Metrics | None = None) -> None:
        self.models = models
        self.flags = FlagSet.empty()
        self._by_model: dict[str, _ModelFlags] = {}
        self.on_error = EvaluationErrors(metrics)

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
                        f"{OVERRIDE_ATTRIBUTE} {quoted(variant)} is not a variant of flag {quoted(flag.key)}; "
                        f"variants: {', '.join(flag.variants)}"
                    )
                mv = models.get(request.model, flag.variants[variant])  # asked for by name: no fallback
            else:
                variant = flag.evaluate(key, attributes, self.on_error)
                try:
                    mv = models.get(request.model, flag.variants[variant])
                except ServeError:
                    mv, variant = self._fallback(request.model, flag)
        if rules.shadow is None:
            return Route(mv, variant)
        shadow_version = rules.shadow.variants[rules.shadow.evaluate(key, attributes, self.on_error)]
        if not shadow_version or shadow_version == mv.version:
            return Route(mv, variant)
        try:
            shadow = models.get(request.model, shadow_version)
        except ServeError:  # unloaded since the flags were checked: the caller must not notice
            return Route(mv, variant)
        return Route(mv, variant, shadow)
