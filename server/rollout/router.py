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
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ortserve.core import InferRequest, ModelManager, ModelVersion, Route
from ortserve.errors import InvalidInput, ServeError
from ortserve.rollout.flags import SHADOW_SUFFIX, Flag, FlagSet

__all__ = ["OVERRIDE_ATTRIBUTE", "FlagRouter"]

OVERRIDE_ATTRIBUTE = "x-variant"


@dataclass(slots=True, frozen=True)
class _ModelFlags:
    primary: Flag | None
    shadow: Flag | None


def _by_model(flags: FlagSet) -> dict[str, _ModelFlags]:
    """Flags grouped by the model they would route: key M (primary) and M.shadow."""
    names = {k.removesuffix(SHADOW_SUFFIX) for k in flags.flags}
    return {n: _ModelFlags(flags.flags.get(n), flags.flags.get(n + SHADOW_SUFFIX)) for n in names}


class FlagRouter:
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
