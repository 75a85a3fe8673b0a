"""The generators: each takes the marker's argument text and returns Markdown."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import os
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*ortserve:generate\s+([\w-]+)(?:\s+(.*?))?\s*-->")

__all__ = ["GENERATORS", "MARKER", "error_tree", "generate", "split_doc", "text"]


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])


def text(value: str) -> str:
    """Prose for Markdown: ``<`` and ``>`` escaped outside code spans (help texts say ``<model>``)."""
    parts = re.split(r"(`+[^`]*`+)", value)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;") for p in parts)


def split_doc(obj: object) -> tuple[str, str]:
    """(what it means, what to do) from a docstring whose advice starts with "What to do:"."""
    doc = inspect.cleandoc(obj.__doc__ or "")
    meaning, _, advice = doc.partition("What to do:")
    return text(" ".join(meaning.split())), text(" ".join(advice.split()))


# -- settings ---------------------------------------------------------------------------------------------
def settings(_: str = "") -> str:
    from ortserve.ops.settings import ENV_PREFIX, Settings
    from ortserve.schema import field_type

    summary, parts = [], []
    for f in dataclasses.fields(Settings):
        kind = field_type(Settings, f.name)
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        how = [f"`{flag}` / `--no-{flag[2:]}`" if kind is bool else f"`{flag} {f.name.upper()}`"]
        how.append(f"`{ENV_PREFIX}{f.name.upper()}`")
        if meta.get("table", True):
            value = (
                str(f.default).lower()
                if kind is bool
                else repr(str(f.default))
                if kind in (str, Path)
                else f.default
            )
            how.append(
                f"`{f.name} = {value}` in the file"
                if f.default is not None
                else f"`{f.name} = ...` in the file"
            )
        allowed = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "text",
            Path: "a path",
        }.get(kind, getattr(kind, "__name__", str(kind)))
        if meta.get("choices"):
            allowed = "one of " + ", ".join(f"`{c}`" for c in meta["choices"])
        if meta.get("ge") is not None and meta.get("le") is not None:
            allowed += f" from {meta['ge']:g} to {meta['le']:g}"
        elif meta.get("ge") is not None:
            allowed += f" >= {meta['ge']:g}"
        elif meta.get("le") is not None:
            allowed += f" <= {meta['le']:g}"
        default = "none" if f.default is None else f"`{f.default}`"
        summary.append([f"[`{f.name}`](#{f.name})", default, text(meta["help"])])
        parts.append(
            f"### {f.name}\n\n{text(meta['help'][0].upper() + meta['help'][1:])}.\n\n"
            f"- set with: {' · '.join(how)}\n- value: {allowed}; default: {default}\n"
        )
    return _table(["setting", "default", "what"], summary) + "\n\n" + "\n".join(parts)


# -- metrics ----------------------------------------------------------------------------------------------
def metrics(_: str = "") -> str:
    from ortserve.metrics import catalogue

    rows = [
        [f"`{m.name}`", m.kind, ", ".join(f"`{x}`" for x in m.labels) or "–", m.help] for m in catalogue()
    ]
    hist = [m for m in catalogue() if m.buckets]
    buckets = "\n".join(f"- `{m.name}`: {', '.join(f'{b:g}' for b in m.buckets)}" for m in hist)
    return (
        _table(["metric", "type", "labels", "what"], rows)
        + "\n\nHistogram buckets (upper bounds; `+Inf` as well):\n\n"
        + buckets
    )


def supervisor_metrics(_: str = "") -> str:
    """The ``--workers`` supervisor's own metrics (``ortserve.ops.restarts.Restarts``, a collector of its own,
    not part of ``Metrics``)."""
    from ortserve.ops.restarts import Restarts

    rows = []
    for family in Restarts(1, 1).collect():
        labels = sorted({k for s in family.samples for k in s.labels})
        name = family.name + ("_total" if family.type == "counter" else "")
        rows.append(
            [f"`{name}`", family.type, ", ".join(f"`{x}`" for x in labels) or "–", family.documentation]
        )
    return _table(["metric", "type", "labels", "what"], rows)


def error_tree() -> Iterator[tuple[int, type]]:
    """(depth, class) for ServeError and every subclass, depth first, in definition order."""
    from ortserve.errors import ServeError

    def walk(cls: type, depth: int) -> Iterator[tuple[int, type]]:
        yield depth, cls
        for sub in cls.__subclasses__():
            yield from walk(sub, depth + 1)

    yield from walk(ServeError, 0)


def outcomes(_: str = "") -> str:
    from ortserve.errors import CANCELLED, OK

    rows = [[f"`{OK}`", "answered"]]
    seen = {OK}
    for _, cls in error_tree():
        if cls.outcome not in seen and cls.__name__ != "ServeError":
            seen.add(cls.outcome)
            rows.append(
                [f"`{cls.outcome}`", f"[{cls.__name__}](@root/troubleshooting.md#{cls.__name__.lower()})"]
            )
    rows.append([f"`{CANCELLED}`", "the caller cancelled or went away before the answer"])
    return _table(["outcome", "when"], rows)


# -- errors -------------------------------------------------------------------------------------------------
def errors(_: str = "") -> str:
    from ortserve.edge.status import status_for

    parts = []
    for depth, cls in error_tree():
        if depth == 0:
            continue
        meaning, advice = split_doc(cls)
        code = status_for(cls.__new__(cls)).name
        parent = cls.__mro__[1].__name__
        kind = f" (a kind of {parent})" if depth > 1 else ""
        parts.append(
            f"### {cls.__name__}\n\n**gRPC status `{code}`**, outcome `{cls.outcome}`{kind}.\n\n{meaning}\n\n"
            f"**What to do:** {advice or 'see the message.'}\n"
        )
    return "\n".join(parts)


def other_errors(_: str = "") -> str:
    from ortserve.ops.settings import SettingsError
    from ortserve.optimize.errors import OptimizeError
    from ortserve.repository import ConfigError, ManifestError

    where = {
        SettingsError: "starting the server (`ortserve`)",
        ConfigError: "reading a model's `config.toml` (server and optimize)",
        ManifestError: "loading a version (server)",
        OptimizeError: "`ortserve-optimize` (exit status 2)",
    }
    parts = []
    for cls, when in where.items():
        meaning, advice = split_doc(cls)
        parts.append(f"### {cls.__name__}\n\nRaised when {when}.\n\n{meaning}\n\n**What to do:** {advice}\n")
    return "\n".join(parts)


# -- optimize steps -------------------------------------------------------------------------------------------
def steps(_: str = "") -> str:
    from ortserve.optimize.steps import REGISTRY, _load_all

    _load_all()
    parts = []
    for name in sorted(REGISTRY):
        step = REGISTRY[name]
        rows = []
        for f in dataclasses.fields(step.config):
            if f.default is not dataclasses.MISSING:
                default = f"`{f.default!r}`"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"`{f.default_factory()!r}`"
            else:
                default = "required"
            rows.append([f"`{f.name}`", f"`{f.type}`", default])
        doc = inspect.cleandoc(step.config.__doc__ or "")
        table = _table(["parameter", "type", "default"], rows) if rows else "No parameters."
        parts.append(
            f"### {name}\n\n*{step.summary}.* Takes {'an ONNX model' if step.accepts == 'onnx' else 'a PyTorch model' if step.accepts == 'torch' else 'either'}."
            f' In a recipe: `{{step = "{name}", ...}}`.\n\n{doc}\n\n{table}\n'
        )
    return "\n".join(parts)


# -- command line ---------------------------------------------------------------------------------------------
def cli(arg: str) -> str:
    """The ``--help`` of a command line: ``ortserve``, ``ortserve-optimize``, or a subcommand of either
    (``ortserve rollout start``, ``ortserve-optimize retrain``), as the program prints it."""
    program, *sub = arg.split()
    if program == "ortserve":
        from ortserve.__main__ import main
    elif program == "ortserve-optimize":
        from ortserve.optimize.__main__ import main
    else:
        raise ValueError(f"cli: unknown program {program!r}")
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = (
        "100"  # argparse wraps at the terminal's width: fix it, for the same page every build
    )
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([*sub, "--help"])
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    text = out.getvalue()
    if not text.startswith("usage: "):
        raise ValueError(f"cli: {arg} --help printed no usage")
    return f"```text\n{text.rstrip()}\n```"


def _protos(arg: str) -> str:
    from docsgen.protos import render

    return render()


def _include(arg: str) -> str:
    from docsgen.files import include

    args = shlex.split(arg)
    return include(args[0], args[1] if len(args) > 1 else None)


GENERATORS: dict[str, Callable[[str], str]] = {
    "settings": settings,
    "metrics": metrics,
    "supervisor-metrics": supervisor_metrics,
    "outcomes": outcomes,
    "steps": steps,
    "errors": errors,
    "other-errors": other_errors,
    "protos": _protos,
    "cli": cli,
    "include": _include,
}


def generate(name: str, arg: str = "") -> str:
    if name not in GENERATORS:
        raise KeyError(f"no generator {name!r}; generators: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](arg)
