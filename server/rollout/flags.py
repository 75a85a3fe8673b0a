"""Flag definitions in OpenFeature flagd's JSON format: parsing, validation, evaluation.

    flags = parse_flags(text)                      # FlagsError(reason, message) when invalid
    check_versions(flags, {"digits": {"1", "2"}})  # variants must name loaded versions
    flags.flags["digits"].evaluate("user-42", {"country": "ch"})  # -> "int8"

Targeting rules are JSONLogic (``ortserve.rollout.jsonlogic``); ``fractional`` buckets exactly as
flagd's providers do (``ortserve.rollout.fractional``).

Bounds, so that a document that passes cannot hurt routing: at most ``MAX_DOCUMENT_BYTES`` (reason
``size``), ``MAX_VARIANTS`` variants per flag (``size``: variant names become metric labels),
``MAX_OPERATORS`` operators per rule (``size``: each costs time on every request; a literal list,
such as an allow-list, counts as one value) and ``MAX_DEPTH`` levels of nesting in a flag
(``depth``: evaluation recurses). An evaluation that fails all the same (any exception) serves the
flag's default variant and is reported to ``on_error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ortserve.errors import FlagsError, quoted
from ortserve.rollout.jsonlogic import Context, Rule, Scope, compile_rule, variant_name

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_OPERATORS",
    "MAX_VARIANTS",
    "SHADOW_SUFFIX",
    "Flag",
    "FlagSet",
    "FlagsError",
    "check_versions",
    "parse_flags",
]

SHADOW_SUFFIX = ".shadow"
MAX_DOCUMENT_BYTES = 1 << 20
MAX_VARIANTS = 32
MAX_OPERATORS = 1000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Flag:
    key: str
    enabled: bool
    variants: dict[str, Any]
    default_variant: str
    rule: Rule | None = field(default=None, compare=False)

    def evaluate(
        self,
        targeting_key: str,
        attributes: Mapping[str, Any],
        on_error: Callable[[Flag, Exception], None] | None = None,
    ) -> str:
        """The variant for this evaluation context: the default one when the flag is disabled,
        has no targeting, or its targeting gives null, an unknown variant or fails (whatever it
        raises, RecursionError included; ``on_error`` is told)."""
        if not self.enabled or self.rule is None:
            return self.default_variant
        try:
            result = self.rule(Context(targeting_key, attributes, self.key))
        except Exception as e:
            if on_error is not None:
                on_error(self, e)
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


def _shown(value: Any) -> str:
    """A value from the document as a message quotes it (bounded: documents come from clients too)."""
    return quoted(value) if isinstance(value, str) else quoted(json.dumps(value))


def _parse_flag(key: str, spec: Any) -> Flag:
    where = f"flag {quoted(key)}"
    if not isinstance(spec, dict):
        raise FlagsError("schema", f"{where}: expected an object")
    state = spec.get("state", "ENABLED")
    if state not in ("ENABLED", "DISABLED"):
        raise FlagsError("schema", f"{where}: state must be ENABLED or DISABLED, got {_shown(state)}")
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise FlagsError("schema", f"{where}: 'variants' must be a non-empty object")
    if len(variants) > MAX_VARIANTS:
        raise FlagsError("size", f"{where}: {len(variants)} variants, at most {MAX_VARIANTS}")
    _check_nesting(where, spec)
    default = spec.get("defaultVariant")
    if not isinstance(default, str) or default not in variants:
        raise FlagsError("schema", f"{where}: defaultVariant {_shown(default)} is not one of its variants")
    targeting = spec.get("targeting")
    rule = None
    if targeting not in (None, {}):
        if not isinstance(targeting, dict):
            raise FlagsError("schema", f"{where}: 'targeting' must be a JSONLogic object")
        rule = compile_rule(targeting, Scope(key, variants))
    return Flag(key, state == "ENABLED", dict(variants), default, rule)


def _check_nesting(where: str, spec: Any) -> None:
    """Depth of one flag and the operators in its targeting, walked without recursion (before
    anything recurses). A list of constants is not walked: it is one value."""
    targeting = spec.get("targeting")
    operators = 0
    stack = [(spec, 1, False)]
    while stack:
        node, depth, rule = stack.pop()
        if depth > MAX_DEPTH:
            raise FlagsError("depth", f"{where}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            operators += rule and len(node) == 1
            stack.extend((v, depth + 1, rule or v is targeting) for v in node.values())
        elif isinstance(node, list) and any(isinstance(x, (dict, list)) for x in node):
            stack.extend((v, depth + 1, rule) for v in node)
    if operators > MAX_OPERATORS:
        raise FlagsError("size", f"{where}: {operators} operators in its targeting, at most {MAX_OPERATORS}")


def parse_flags(text: str | bytes) -> FlagSet:
    """Parse and compile a flagd flags document; raises FlagsError naming the first problem."""
    size = len(text) if isinstance(text, bytes) or len(text) * 4 <= MAX_DOCUMENT_BYTES else len(text.encode())
    if size > MAX_DOCUMENT_BYTES:
        raise FlagsError("size", f"the document has {size} bytes, at most {MAX_DOCUMENT_BYTES}")
    try:
        source = text if isinstance(text, str) else text.decode("utf-8")
        doc = json.loads(source)
    except (ValueError, UnicodeDecodeError) as e:  # UnicodeDecodeError: not UTF-8 (e.g. a UTF-16 file)
        raise FlagsError("json", f"not valid UTF-8 JSON: {e}") from None
    except RecursionError:
        raise FlagsError(
            "depth", f"JSON nested too deeply (a flag may nest at most {MAX_DEPTH} levels)"
        ) from None
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
                    "schema",
                    f"flag {quoted(key)}: variant {quoted(name)} must be a version string, got {_shown(value)}",
                )
            if shadow and value == "":
                continue
            if value not in versions:
                raise FlagsError(
                    "version",
                    f"flag {quoted(key)}: variant {quoted(name)} names version {quoted(value)} of model "
                    f"{quoted(model)}, which is not loaded (loaded: {', '.join(sorted(versions)) or 'none'})",
                )
