"""Flag definitions in OpenFeature flagd's JSON format: parsing, validation, evaluation.

    flags = parse_flags(text)                      # FlagsError(reason, message) when invalid
    check_versions(flags, {"digits": {"1", "2"}})  # variants must name loaded versions
    flags.flags["digits"].evaluate("user-42", {"country": "ch"})  # -> "int8"

Targeting rules are JSONLogic with the operators flagd users need for model rollouts:
``fractional``, ``if``, ``==``, ``!=``, ``in``, ``var``, ``cat``, ``and``, ``or``. They are
compiled once into closures, so that evaluating a flag on the request path costs a few
microseconds. Semantics follow flagd's reference evaluator (openfeature-flagd-core):
``fractional`` hashes the canonical CBOR encoding of ``[flagKey, targetingKey]`` (or of the
value its first argument computes) with murmur3 32-bit and picks ``(hash * total) >> 32``.

Stricter than flagd, because a refused file keeps the last good flags serving: unknown
operators, fractional weights that are not integers summing to 100, and fractional variants
the flag does not define are errors at load time rather than silent defaults at request time.
"""

from __future__ import annotations

import bisect
import json
import math
import struct
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import mmh3

__all__ = ["SHADOW_SUFFIX", "Flag", "FlagSet", "FlagsError", "check_versions", "parse_flags"]

SHADOW_SUFFIX = ".shadow"
_OPERATORS = ("fractional", "if", "==", "!=", "in", "var", "cat", "and", "or")

Rule = Callable[["_Context"], Any]


@dataclass(frozen=True)
class _Scope:
    """What compiling one flag's targeting needs to know about the flag."""

    key: str
    variants: Collection[str]

    @property
    def where(self) -> str:
        return f"flag '{self.key}'"


class FlagsError(ValueError):
    """A flags document that is refused. ``reason`` is a short label for metrics:
    json, schema, operator, weights, version."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Context:
    """The JSONLogic data of one evaluation; the dict is only built when a rule reads it."""

    __slots__ = ("_data", "attributes", "flag_key", "targeting_key")

    def __init__(self, targeting_key: str, attributes: Mapping[str, Any], flag_key: str) -> None:
        self.targeting_key = targeting_key
        self.attributes = attributes
        self.flag_key = flag_key
        self._data: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {
                **self.attributes,
                "targetingKey": self.targeting_key or None,
                "$flagd": {"flagKey": self.flag_key, "timestamp": int(time.time())},
            }
        return self._data


# -- JSONLogic value semantics (as JavaScript / json-logic) --------------------------------------
def _truthy(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isnan(v) and v != 0.0
    if isinstance(v, dict):
        return True
    return bool(v)


def _to_string(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.15g}"
    if isinstance(v, list):
        return ",".join(_to_string(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    return str(v)


def _to_number(v: Any) -> float:
    if isinstance(v, (int, float)):
        return v
    if v is None:
        return 0
    if isinstance(v, list):
        return 0 if not v else (_to_number(v[0]) if len(v) == 1 else math.nan)
    if isinstance(v, str) and v.strip().lower() not in ("inf", "-inf", "+inf"):
        try:
            return float(v)
        except ValueError:
            pass
    return math.nan


def _equals(a: Any, b: Any) -> bool:
    """JSONLogic's loose ``==`` (bool counts as a number, as in json-logic's reference)."""
    if type(a) is type(b):
        return a is b if isinstance(a, (list, dict)) else a == b
    if isinstance(a, (int, float)):
        return a == (b if isinstance(b, (int, float)) else _to_number(b))
    if isinstance(b, (int, float)):
        return _to_number(a) == b
    if a is None or b is None:
        return False
    if isinstance(a, (list, dict)) and isinstance(b, (list, dict)):
        return False
    return _to_string(a) == _to_string(b)


def _var(data: Any, key: Any, default: Any = None) -> Any:
    if key is None or key == "":
        return data
    for prop in _to_string(key).split("."):
        if isinstance(data, dict):
            data = data.get(prop)
        elif isinstance(data, (list, str)) and prop.isdigit() and int(prop) < len(data):
            data = data[int(prop)]
        else:
            return default
    return default if data is None else data


# -- canonical CBOR (RFC 8949 4.2.1) for the fractional hash input ------------------------------
def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes((major << 5 | extra,)) + struct.pack(fmt, n)
    raise ValueError("integer too large for CBOR")


def _cbor(v: Any) -> bytes:
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, float) and v.is_integer() and -(2**63) <= v <= 2**64 - 1:
        v = int(v)  # flagd normalizes integral floats before encoding
    if isinstance(v, int):
        return _cbor_head(0, v) if v >= 0 else _cbor_head(1, -1 - v)
    if isinstance(v, str):
        b = v.encode()
        return _cbor_head(3, len(b)) + b
    if isinstance(v, float):
        for prefix, fmt in ((b"\xf9", ">e"), (b"\xfa", ">f")):
            try:
                packed = struct.pack(fmt, v)
            except OverflowError:
                continue
            if struct.unpack(fmt, packed)[0] == v or math.isnan(v):
                return prefix + packed
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, list):
        return _cbor_head(4, len(v)) + b"".join(_cbor(x) for x in v)
    raise TypeError(f"cannot bucket by a {type(v).__name__}")


# -- fractional -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Split:
    variants: tuple[Any, ...]
    ends: tuple[int, ...]  # cumulative weights
    total: int

    def pick(self, data: bytes) -> Any:
        bucket = (mmh3.hash(data, signed=False) * self.total) >> 32
        i = bisect.bisect_right(self.ends, bucket)
        return self.variants[i] if i < len(self.variants) else None


def _split(entries: list[Any]) -> _Split | None:
    """The split of evaluated fraction entries, or None where flagd returns null."""
    variants, ends, total = [], [], 0
    for e in entries:
        if not isinstance(e, list) or not e or len(e) > 2:
            return None
        weight = 1
        if len(e) == 2:
            if isinstance(e[1], bool) or not isinstance(e[1], int):
                return None
            weight = max(0, e[1])
        total += weight
        variants.append(e[0])
        ends.append(total)
    if total <= 0 or total > 2_147_483_647:
        return None
    return _Split(tuple(variants), tuple(ends), total)


def _compile_fractional(args: list[Any], scope: _Scope) -> Rule:
    shorthand = bool(args) and isinstance(args[0], list)
    entries = args if shorthand else args[1:]
    literal = all(isinstance(e, list) and all(not isinstance(x, (dict, list)) for x in e) for e in entries)
    split: _Split | None = None
    if literal:
        split = _split(entries)
        if split is None or split.total != 100:
            raise FlagsError(
                "weights",
                f"{scope.where}: fractional weights must be whole numbers summing to 100, got "
                f"{[e[1] if len(e) == 2 else 1 for e in entries if isinstance(e, list) and e]}",
            )
        unknown = [v for v in split.variants if _variant_name(v) not in scope.variants]
        if unknown:
            raise FlagsError(
                "schema", f"{scope.where}: fractional names variants the flag does not define: {unknown}"
            )
    if shorthand and literal:
        assert split is not None
        fixed, prefix = split, b"\x82" + _cbor(scope.key)  # CBOR of [flagKey, targetingKey]

        def rule(ctx: _Context) -> Any:
            tk = ctx.targeting_key
            if not tk:
                return None
            b = tk.encode()
            return fixed.pick(prefix + _cbor_head(3, len(b)) + b)

        return rule

    compiled = [_compile(a, scope) for a in args]
    known = split if literal else None  # literal weights: the split is the same on every call

    def generic(ctx: _Context) -> Any:
        values = [c(ctx) for c in compiled]
        if not values:
            return None
        if isinstance(values[0], list):
            if not ctx.targeting_key:
                return None
            bucket_by: Any = [ctx.flag_key, ctx.targeting_key]
            s = _split(values)
        else:
            bucket_by = values[0]
            if bucket_by is None:
                return None
            s = known or _split(values[1:])
        if s is None:
            return None
        try:
            return s.pick(_cbor(bucket_by))
        except (TypeError, ValueError):
            return None

    return generic


def _chain(rules: list[Rule], stop_on: bool) -> Rule:
    """``and`` (stop on the first falsy value) and ``or`` (the first truthy): that value, else the last."""

    def chain(ctx: _Context) -> Any:
        v = None
        for f in rules:
            v = f(ctx)
            if _truthy(v) is stop_on:
                return v
        return v

    return chain


# -- compiler ---------------------------------------------------------------------------------
def _compile(node: Any, scope: _Scope) -> Rule:
    if isinstance(node, list):
        items = [_compile(x, scope) for x in node]
        return lambda ctx: [f(ctx) for f in items]
    if not isinstance(node, dict) or len(node) != 1:
        return lambda ctx: node
    ((op, raw),) = node.items()
    if op not in _OPERATORS:
        raise FlagsError(
            "operator", f"{scope.where}: unknown operator '{op}' (supported: {', '.join(_OPERATORS)})"
        )
    args = raw if isinstance(raw, list) else [raw]
    if op == "fractional":
        return _compile_fractional(args, scope)
    if op == "var":
        if len(args) == 1 and isinstance(args[0], str):
            key = args[0]
            if key == "targetingKey":
                return lambda ctx: ctx.targeting_key or None
            if key == "$flagd.flagKey":
                return lambda ctx: ctx.flag_key
            return lambda ctx: _var(ctx.data(), key)
        cargs = [_compile(a, scope) for a in args]
        return lambda ctx: _var(ctx.data(), *[c(ctx) for c in cargs][:2])
    c = [_compile(a, scope) for a in args]
    if op == "if":

        def if_(ctx: _Context) -> Any:
            i, last = 0, len(c) - 1
            while i < last:
                if _truthy(c[i](ctx)):
                    return c[i + 1](ctx)
                i += 2
            return c[i](ctx) if i == last else None

        return if_
    if op in ("and", "or"):
        return _chain(c, stop_on=op == "or")
    if op == "cat":
        return lambda ctx: "".join(_to_string(f(ctx)) for f in c)
    a, b = (c + [lambda ctx: None] * 2)[:2]
    if op == "==":
        return lambda ctx: _equals(a(ctx), b(ctx))
    if op == "!=":
        return lambda ctx: not _equals(a(ctx), b(ctx))

    def in_(ctx: _Context) -> bool:  # op == "in"
        needle, haystack = a(ctx), b(ctx)
        if isinstance(haystack, list):
            return needle in haystack
        return isinstance(haystack, str) and _to_string(needle) in haystack

    return in_


def _variant_name(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


# -- flags ------------------------------------------------------------------------------------
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
            result = self.rule(_Context(targeting_key, attributes, self.key))
        except (TypeError, ValueError, ArithmeticError):
            return self.default_variant
        if result is None:
            return self.default_variant
        name = _variant_name(result)
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
        rule = _compile(targeting, _Scope(key, variants))
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
