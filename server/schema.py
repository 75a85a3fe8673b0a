"""Typed tables: check a parsed TOML/JSON table against a dataclass, and write one back as TOML.

Each file format of the project (a model's ``config.toml``, the server's settings file, an optimize recipe,
a step's parameters) is declared once, as dataclasses. :func:`from_table` builds one from a table and
refuses anything else with one line naming the place, expected vs got::

    @dataclass(frozen=True)
    class Batching:
        max_queue_delay_us: int = field(default=500, metadata={"ge": 0, "help": "longest wait"})

    from_table(Batching, {"max_queue_delay_us": -1}, "models/digits/config.toml", path=("batching",))
    # SchemaError: models/digits/config.toml [batching] max_queue_delay_us: expected an integer >= 0, got -1

Types: int (a bool is not one), float (an int is fine), bool, str, Path, Literal[...], ``X | None``,
tuple[X, ...] / list[X], dict[str, X], Any, and dataclasses (a sub-table; a tuple of them, an array of
tables). Field metadata: ``ge``/``le`` (bounds of a number, or of each number in a list or table),
``choices``, ``min_items``, ``help``, ``table: False`` (not a key: the value comes from ``given`` or the
default) and ``parse`` (raw value -> field value, raising ``ValueError("expected ...")``). Checks across
fields go in ``__post_init__`` (a ValueError there is reported at the table). :func:`to_table` and
:func:`to_toml` go the other way, in field order, so the same values always give the same bytes.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["SchemaError", "field_type", "field_value", "from_table", "to_table", "to_toml", "toml_value"]

T = TypeVar("T")
Loc = tuple[str | int, ...]  # keys and array indices from the file's top level


class SchemaError(ValueError):
    """A table does not match its dataclass. The message is one line: place, expected, got."""


class _Mismatch(Exception):
    """A value is not of its field's type (reported where the whole field is known)."""


def from_table(
    cls: type[T],
    table: Any,
    where: str,
    *,
    path: Loc = (),
    given: Mapping[str, Any] | None = None,
    key: str = "key",
    error: type[Exception] = SchemaError,
) -> T:
    """Build ``cls`` from ``table``. ``where`` names the source (a file), ``path`` the table's place in it;
    ``key`` is what messages call a key ("setting", "parameter"); ``error`` is the exception raised."""
    return _Ctx(where, key, error).build(cls, table, path, given or {})


def field_value(
    cls: type, name: str, value: Any, where: str, *, text: bool = False, error: type[Exception] = SchemaError
) -> Any:
    """Check one value of field ``name`` of ``cls`` that comes from a source of its own (a flag, an environment
    variable: ``where`` names it). ``text``: a string is first read as the field's type ("8", "true")."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    hint = typing.get_type_hints(cls)[name]
    raw = _from_text(hint, value) if text and isinstance(value, str) else value
    return _Ctx(where, "key", error).value(hint, raw, f.metadata, (), shown=value)


def field_type(cls: type, name: str) -> Any:
    """The type of field ``name``, without ``| None``: ``Path`` for ``Path | None``."""
    hint = typing.get_type_hints(cls)[name]
    inner = [a for a in _union_args(hint) if a is not type(None)]
    return inner[0] if len(inner) == 1 else hint


class _Ctx:
    def __init__(self, where: str, key: str, error: type[Exception]) -> None:
        self.where, self.key, self.error = where, key, error

    def build(self, cls: type[T], table: Any, path: Loc, given: Mapping[str, Any]) -> T:
        if not isinstance(table, Mapping):
            raise self.error(f"{_at(self.where, path)}: expected a table, got {_show(table)}")
        fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        keys = [f.name for f in fields if f.metadata.get("table", True)]
        for k in table:
            if k not in keys:
                hint = _close(k, keys) or f"; expected one of: {', '.join(sorted(keys)) or 'none'}"
                raise self.error(f"{_at(self.where, path, table=True)}: unknown {self.key} {k!r}{hint}")
        hints = typing.get_type_hints(cls)
        kwargs = dict(given)
        for f in fields:
            if f.name in table and f.name in keys:
                kwargs[f.name] = self.value(hints[f.name], table[f.name], f.metadata, (*path, f.name))
            elif f.name not in kwargs and f.default is f.default_factory is dataclasses.MISSING:
                raise self.error(f"{_at(self.where, path, table=True)}: missing {self.key} {f.name!r}")
        try:
            return cls(**kwargs)
        except ValueError as e:  # a check across fields in __post_init__
            raise self.error(f"{_at(self.where, path, table=True)}: {e}") from None

    def value(self, hint: Any, value: Any, meta: Mapping[str, Any], path: Loc, shown: Any = None) -> Any:
        shown, parse = value if shown is None else shown, meta.get("parse")
        try:
            return parse(value) if parse else self.check(hint, value, meta, path)
        except _Mismatch:
            expected = f"expected {_describe(hint, meta)}"
        except ValueError as e:
            if not parse:
                raise  # a sub-table's own error, already placed
            expected = str(e)
        close = _close(shown, _choices(hint, meta)) if isinstance(shown, str) else ""
        raise self.error(f"{_at(self.where, path)}: {expected}, got {_show(shown)}{close}") from None

    def check(self, hint: Any, value: Any, meta: Mapping[str, Any], path: Loc) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return value
        if len(_union_args(hint)) > 1:
            if value is None and type(None) in args:
                return None
            for a in (a for a in args if a is not type(None)):
                try:
                    return self.check(a, value, meta, path)
                except _Mismatch:
                    pass
            raise _Mismatch
        if dataclasses.is_dataclass(hint):
            return self.build(hint, value, path, {})  # type: ignore[arg-type]
        if origin in (tuple, list):
            if not isinstance(value, (list, tuple)) or len(value) < meta.get("min_items", 0):
                raise _Mismatch
            items = [self.check(args[0], v, meta, (*path, i)) for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise _Mismatch
            return {k: self.check(args[1], v, meta, (*path, k)) for k, v in value.items()}
        if origin is Literal:
            if value in args:
                return value
            raise _Mismatch
        return _scalar(hint, value, meta)


def _scalar(hint: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint in (int, float):
        ok = isinstance(value, int) or (hint is float and isinstance(value, float))
        if ok and not isinstance(value, bool):
            lo, hi = meta.get("ge"), meta.get("le")
            if (lo is None or value >= lo) and (hi is None or value <= hi):
                return hint(value)
    elif hint is str or hint is Path:
        if isinstance(value, (str, Path)) and (not meta.get("choices") or value in meta["choices"]):
            return hint(value)
    else:
        raise TypeError(f"ortserve.schema cannot check values of type {hint!r}")
    raise _Mismatch


_WORDS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(("0", "false", "no", "off"), False)


def _from_text(hint: Any, text: str) -> Any:
    """``text`` read as the (first fitting) type of ``hint``; unchanged when none fits."""
    for a in _union_args(hint):
        try:
            if a is bool:
                return _WORDS[text.strip().lower()]
            if a in (int, float):
                return a(text)
        except (KeyError, ValueError):
            continue
    return text


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _choices(hint: Any, meta: Mapping[str, Any]) -> tuple[Any, ...]:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return tuple(meta.get("choices") or ())


_NAMES = {bool: ("true or false", "true or false values"), int: ("an integer", "integers")}
_NAMES |= {float: ("a number", "numbers"), str: ("a string", "strings"), Path: ("a path", "paths")}


def _describe(hint: Any, meta: Mapping[str, Any], plural: bool = False) -> str:
    """What a value of this type must be, for messages: "a list of integers >= 1"."""
    inner = [a for a in _union_args(hint) if a is not type(None)]
    if len(inner) > 1:
        return " or ".join(_describe(a, meta, plural) for a in inner)
    hint = inner[0]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list) and dataclasses.is_dataclass(args[0]):
        head, tail = "array", " of tables"
    elif origin in (tuple, list):
        size = "non-empty " if meta.get("min_items") else ""
        head, tail = f"{size}list", f" of {_describe(args[0], meta, True)}"
    elif origin is dict:
        head, tail = "table", "" if args[1] is Any else f" of {_describe(args[1], meta, True)}"
    elif dataclasses.is_dataclass(hint):
        head, tail = "table", ""
    elif _choices(hint, meta):
        return "one of " + ", ".join(repr(c) for c in _choices(hint, meta))
    else:
        bounds = _bounds(meta) if hint in (int, float) else ""
        return _NAMES.get(hint, ("a value", "values"))[plural] + bounds
    return f"{head}s{tail}" if plural else f"{'an' if head[0] in 'aeiou' else 'a'} {head}{tail}"


def _bounds(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("ge"), meta.get("le")
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    return f" >= {lo}" if lo is not None else f" <= {hi}" if hi is not None else ""


def _at(where: str, path: Loc, table: bool = False) -> str:
    """Where a value is: ``file: key``, ``file [batching] key``, ``file: inputs[0].shape``; where a table is
    (``table``): ``file``, ``file [batching]``, ``file: inputs[0]``."""
    if path and all(isinstance(p, str) for p in path) and (table or len(path) > 1):
        head = path if table else path[:-1]
        return f"{where} [{'.'.join(map(str, head))}]" + ("" if table else f" {path[-1]}")
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else f".{p}" if text else p
    return f"{where}: {text}" if text else where


def _close(word: str, options: typing.Sequence[Any]) -> str:
    """``; did you mean 'min_cosine'?`` when one of the options is close to ``word``."""
    close = difflib.get_close_matches(word, [o for o in options if isinstance(o, str)], n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _show(value: Any) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- writing -------------------------------------------------------------------------------------------


def to_table(obj: Any, *, defaults: bool = False) -> dict[str, Any]:
    """``obj`` (a dataclass) as a TOML-ready table, in field order. Values equal to the field's default are
    left out unless ``defaults``; None always is (TOML has no null), and so are empty sub-tables."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not f.init or not f.metadata.get("table", True) or value is None:
            continue
        if not defaults and value == _default(f):
            continue
        plain = _plain(value, defaults)
        if plain != {} or not dataclasses.is_dataclass(value):
            out[f.name] = plain
    return out


def _default(f: dataclasses.Field) -> Any:
    factory = f.default_factory
    return f.default if factory is dataclasses.MISSING else factory()


def _plain(value: Any, defaults: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_table(value, defaults=defaults)
    if isinstance(value, (list, tuple)):
        return [_plain(v, defaults) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, defaults) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value


def to_toml(table: Any, header: str = "") -> str:
    """A table (or a dataclass, through :func:`to_table`) as TOML text: ``header`` as comment lines, the
    plain keys, then each sub-table as ``[name]`` and each list of tables as ``[[name]]`` (tables deeper
    than that are written inline)."""
    if dataclasses.is_dataclass(table):
        table = to_table(table)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    sections: list[list[str]] = []
    for k, v in table.items():
        if isinstance(v, Mapping):
            sections.append([f"[{_key(k)}]", *_pairs(v)])
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
            sections += [[f"[[{_key(k)}]]", *_pairs(x)] for x in v]
        else:
            lines.append(f"{_key(k)} = {toml_value(v)}")
    for section in sections:
        lines += ["", *section] if lines else section
    return "\n".join(lines) + "\n"


def _pairs(table: Mapping[str, Any]) -> list[str]:
    return [f"{_key(k)} = {toml_value(v)}" for k, v in table.items()]


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_value(k)


def toml_value(v: Any) -> str:
    """One TOML value: ``"text"``, ``8``, ``0.5``, ``true``, ``[1, 2]``, ``{a = 1}``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return '"' + "".join(_escape(c) for c in str(v)) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def _escape(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if c < " " or c == "\x7f":
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c, f"\\u{ord(c):04x}")
    return c
