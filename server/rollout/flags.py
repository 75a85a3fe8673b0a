"""Flag definitions in OpenFeature flagd's JSON format: parsing, validation, evaluation.

    flags = parse_flags(text)                      # FlagsError(reason, message) when invalid
    check_versions(flags, {"digits": {"1", "2"}})  # variants must name loaded versions
    flags.flags["digits"].evaluate("user-42", {"country": "ch"})  # -> "int8"

Targeting rules are JSONLogic (``ortserve.rollout.jsonlogic``); ``fractional`` buckets exactly as
flagd's providers do (``ortserve.rollout.fractional``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ortserve.errors import FlagsError
from ortserve.rollout.jsonlogic import Context, Rule, Scope, compile_rule, variant_name

__all__ = ["SHADOW_SUFFIX", "Flag", "FlagSet", "FlagsError", "check_versions", "parse_flags"]

SHADOW_SUFFIX = ".shadow"


@dataclass(frozen=True)
class Flag:
    key: str
    enabled: bool
    variants: dict[str, Any]
    default_variant: str
    rule: Rule | None = field(default=None, compare=False)

    def evaluate(self, targeting_key: str, attributes: Mapping[str, Any]) -> str:
        """The variant for this evaluation context: the default one when the flag is disabled,
        has no targeting, or its targeting gives null, an unknown variant or an error."""
        if not self.enabled or self.rule is None:
            return self.default_variant
        try:
            result = self.rule(Context(targeting_key, attributes, self.key))
        except (TypeError, ValueError, ArithmeticError):
            return self.default_variant
        if result is None:
            return self.default_variant
        name = variant_name(result)
        return name if name in self.variants else self.default_variant


@dataclass(frozen=True)
class FlagSet:
    flags: dict[str, Flag]
    text: str = ""

    @classmethod
    def empty(cls) -> FlagSet:
        return cls({}, "")


def _parse_flag(key: str, spec: Any) -> Flag:
    where = f"flag '{key}'"
    if not isinstance(spec, dict):
        raise FlagsError("schema", f"{where}: expected an object")
    state = spec.get("state", "ENABLED")
    if state not in ("ENABLED", "DISABLED"):
        raise FlagsError("schema", f"{where}: state must be ENABLED or DISABLED, got {state!r}")
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise FlagsError("schema", f"{where}: 'variants' must be a non-empty object")
    default = spec.get("defaultVariant")
    if not isinstance(default, str) or default not in variants:
        raise FlagsError("schema", f"{where}: defaultVariant {default!r} is not one of its variants")
    targeting = spec.get("targeting")
    rule = None
    if targeting not in (None, {}):
        if not isinstance(targeting, dict):
            raise FlagsError("schema", f"{where}: 'targeting' must be a JSONLogic object")
        rule = compile_rule(targeting, Scope(key, variants))
    return Flag(key, state == "ENABLED", dict(variants), default, rule)


def parse_flags(text: str | bytes) -> FlagSet:
    """Parse and compile a flagd flags document; raises FlagsError naming the first problem."""
    try:
        source = text if isinstance(text, str) else text.decode("utf-8")
        doc = json.loads(source)
    except (ValueError, UnicodeDecodeError) as e:  # UnicodeDecodeError: not UTF-8 (e.g. a UTF-16 file)
        raise FlagsError("json", f"not valid UTF-8 JSON: {e}") from None
    except RecursionError:
        raise FlagsError("json", "JSON nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("flags"), dict):
        raise FlagsError("schema", "expected an object with a 'flags' object")
    try:
        flags = {key: _parse_flag(key, spec) for key, spec in doc["flags"].items()}
    except RecursionError:
        raise FlagsError("schema", "targeting rules nested too deeply") from None
    return FlagSet(flags, source)


def check_versions(flags: FlagSet, loaded: Mapping[str, Collection[str]]) -> None:
    """Every variant of a model's flag (key = model name) must name a loaded version of it, and
    every variant of its shadow flag (``<model>.shadow``) a loaded version or "" (no shadow).
    Flags that name no model in the repository are not routing flags and are left alone."""
    for key, flag in flags.flags.items():
        shadow = key.endswith(SHADOW_SUFFIX)
        model = key[: -len(SHADOW_SUFFIX)] if shadow else key
        if model not in loaded:
            continue
        versions = loaded[model]
        for name, value in flag.variants.items():
            if not isinstance(value, str):
                raise FlagsError(
                    "schema", f"flag '{key}': variant '{name}' must be a version string, got {value!r}"
                )
            if shadow and value == "":
                continue
            if value not in versions:
                raise FlagsError(
                    "version",
                    f"flag '{key}': variant '{name}' names version '{value}' of model "
                    f"'{model}', which is not loaded (loaded: {', '.join(sorted(versions)) or 'none'})",
                )
