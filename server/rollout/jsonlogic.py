"""JSONLogic targeting rules, compiled once into closures so that evaluating a flag on the request
path costs a few microseconds.

    rule = compile_rule({"if": [{"==": [{"var": "country"}, "ch"]}, "int8", "stable"]}, Scope("digits", {"int8", "stable"}))
    rule(Context("user-42", {"country": "ch"}, "digits"))       # -> "int8"

The operators flagd users need for model rollouts: ``fractional``, ``if``, ``==``, ``!=``, ``in``,
``var``, ``cat``, ``and``, ``or``, with the value semantics of JavaScript / json-logic.
Stricter than flagd, because a refused document keeps the last good flags serving: unknown
operators, fractional weights that are not integers summing to 100, and fractional variants the
flag does not define are errors when compiling rather than silent defaults at request time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ortserve.errors import FlagsError, quoted
from ortserve.rollout.fractional import Split, cbor, cbor_head, make_split

__all__ = ["OPERATORS", "Context", "Rule", "Scope", "compile_rule", "variant_name"]

OPERATORS = ("fractional", "if", "==", "!=", "in", "var", "cat", "and", "or")

Rule = Callable[["Context"], Any]


@dataclass(frozen=True)
class Scope:
    """What compiling one flag's targeting needs to know about the flag."""

    key: str
    variants: Collection[str]

    @property
    def where(self) -> str:
        return f"flag {quoted(self.key)}"


class Context:
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


def _compile_fractional(args: list[Any], scope: Scope) -> Rule:
    shorthand = bool(args) and isinstance(args[0], list)
    entries = args if shorthand else args[1:]
    literal = all(isinstance(e, list) and all(not isinstance(x, (dict, list)) for x in e) for e in entries)
    split: Split | None = None
    if literal:
        split = make_split(entries)
        if split is None or split.total != 100:
            raise FlagsError(
                "weights",
                f"{scope.where}: fractional weights must be whole numbers summing to 100, got "
                f"{quoted(str([e[1] if len(e) == 2 else 1 for e in entries if isinstance(e, list) and e]), 200)}",
            )
        unknown = [v for v in split.variants if variant_name(v) not in scope.variants]
        if unknown:
            raise FlagsError(
                "schema",
                f"{scope.where}: fractional names variants the flag does not define: {quoted(str(unknown), 200)}",
            )
    if shorthand and literal:
        assert split is not None
        fixed, prefix = split, b"\x82" + cbor(scope.key)  # CBOR of [flagKey, targetingKey]

        def rule(ctx: Context) -> Any:
            tk = ctx.targeting_key
            if not tk:
                return None
            b = tk.encode()
            return fixed.pick(prefix + cbor_head(3, len(b)) + b)

        return rule

    compiled = [_compile(a, scope) for a in args]
    known = split if literal else None  # literal weights: the split is the same on every call

    def generic(ctx: Context) -> Any:
        values = [c(ctx) for c in compiled]
        if not values:
            return None
        if isinstance(values[0], list):
            if not ctx.targeting_key:
                return None
            bucket_by: Any = [ctx.flag_key, ctx.targeting_key]
            s = make_split(values)
        else:
            bucket_by = values[0]
            if bucket_by is None:
                return None
            s = known or make_split(values[1:])
        if s is None:
            return None
        try:
            return s.pick(cbor(bucket_by))
        except (TypeError, ValueError):
            return None

    return generic


def _chain(rules: list[Rule], stop_on: bool) -> Rule:
    """``and`` (stop on the first falsy value) and ``or`` (the first truthy): that value, else the last."""

    def chain(ctx: Context) -> Any:
        v = None
        for f in rules:
            v = f(ctx)
            if _truthy(v) is stop_on:
                return v
        return v

    return chain


# -- compiler ---------------------------------------------------------------------------------
def _literal(node: Any) -> bool:
    """True when ``node`` holds no operator: it evaluates to itself."""
    if isinstance(node, list):
        return all(_literal(x) for x in node)
    return not (isinstance(node, dict) and len(node) == 1)


def _compile(node: Any, scope: Scope) -> Rule:
    if isinstance(node, list):
        if _literal(node):  # a list of constants (an allow-list) costs nothing per evaluation
            return lambda ctx: node
        items = [_compile(x, scope) for x in node]
        return lambda ctx: [f(ctx) for f in items]
    if not isinstance(node, dict) or len(node) != 1:
        return lambda ctx: node
    ((op, raw),) = node.items()
    if op not in OPERATORS:
        raise FlagsError(
            "operator", f"{scope.where}: unknown operator {quoted(op)} (supported: {', '.join(OPERATORS)})"
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

        def if_(ctx: Context) -> Any:
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

    if len(args) > 1 and isinstance(args[1], list) and _literal(args[1]):
        try:
            members = frozenset(args[1])  # membership in a literal list: one hash lookup
        except TypeError:  # it holds lists or objects: compare one by one
            pass
        else:

            def in_set(ctx: Context) -> bool:
                try:
                    return a(ctx) in members
                except TypeError:  # an unhashable needle equals none of them
                    return False

            return in_set

    def in_(ctx: Context) -> bool:  # op == "in"
        needle, haystack = a(ctx), b(ctx)
        if isinstance(haystack, list):
            return needle in haystack
        return isinstance(haystack, str) and _to_string(needle) in haystack

    return in_


def variant_name(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def compile_rule(node: Any, scope: Scope) -> Rule:
    """Compile a JSONLogic rule; raises FlagsError naming the flag for what is refused."""
    return _compile(node, scope)
