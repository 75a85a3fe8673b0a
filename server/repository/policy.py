"""The ``[versions]`` table of a model's ``config.toml``: which version folders load (part of the schema in
:mod:`ortserve.repository.config`, which re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["VersionPolicy"]

_POLICY = 'expected "all", "latest N" or a list of versions'


def _policy(value: Any) -> tuple[str, int, tuple[str, ...]]:
    """``policy`` as (kind, latest, versions); ValueError(expected ...) when it is none of the forms."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
        return "specific", 1, tuple(str(v) for v in value)
    if value == "all":
        return "all", 1, ()
    if isinstance(value, str) and value.startswith("latest"):
        rest = value[len("latest") :].strip() or "1"
        if rest.isdigit() and int(rest) >= 1:
            return "latest", int(rest), ()
    raise ValueError(_POLICY)


def _policy_value(value: Any) -> str | tuple[str, ...]:
    kind, _, versions = _policy(value)
    return versions if kind == "specific" else str(value)


@dataclass(frozen=True)
class VersionPolicy:
    """The ``[versions]`` table: which version folders load. ``VersionPolicy("latest 2")``."""

    policy: str | tuple[str, ...] = field(
        default="all", metadata={"parse": _policy_value, "help": '"all", "latest N" or a list of versions'}
    )
    kind: str = field(init=False)  # all | latest | specific
    latest: int = field(init=False)
    versions: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        kind, latest, versions = _policy(self.policy)
        for name, value in (("kind", kind), ("latest", latest), ("versions", versions)):
            object.__setattr__(self, name, value)

    def select(self, available: list[str]) -> list[str]:
        ordered = sorted(available, key=int)
        if self.kind == "latest":
            return ordered[-self.latest :]
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.latest}"
        if self.kind == "specific":
            return "specific " + ",".join(self.versions)
        return "all"
