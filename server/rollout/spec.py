"""A rollout's spec: which candidate, the traffic steps, how long and how much traffic each step needs, and
what the judge checks. TOML or JSON with these keys (``ortserve rollout start --spec FILE``, the
``spec_json`` of Admin ``StartRollout``); every key but ``model`` and ``candidate`` is optional::

    model = "digits"
    candidate = "3"
    baseline = "1"              # default: the model's default version when the rollout starts
    steps = [5, 25, 50]         # candidate's share of traffic at each step, in percent; then promotion
    step_seconds = 120          # the least time at each step
    step_requests = 200         # the least candidate requests at each step
    checks = ["errors", "latency", "accuracy"]
    latency_slo_ms = 250        # a request answered slower than this is a bad event ("latency")
    alpha = 0.05                # the judge's false-alarm bound, over every check together
    max_prediction_psi = 0.25   # optional gate: PSI of the two arms' predicted classes at each step's end
    idle_seconds = 60           # no candidate request for this long: waiting-for-data
    deadline_seconds = 0        # waiting-for-data longer than this rolls back (0: wait for ever)
    [shadow]                    # optional: mirror traffic to the candidate before any user sees it
    requests = 500              # compared requests needed
    seconds = 30
    percent = 100               # share of requests mirrored
    max_disagreement = 0.02     # top-1 disagreement rate tolerated (the shadow check's null)

A bad spec is refused with one line naming the key, what was expected and what was found.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ortserve.errors import InvalidInput, quoted
from ortserve.schema import SchemaError, from_table, to_table

__all__ = ["CHECKS", "RolloutSpec", "ShadowPhase", "parse_spec", "spec_from_dict"]

# Sequential checks on counts of bad events (``judge``); "shadow" runs only with a [shadow] phase.
CHECKS = ("errors", "latency", "accuracy", "shadow")


@dataclass(frozen=True)
class ShadowPhase:
    requests: int = field(default=200, metadata={"ge": 0, "help": "compared requests the phase needs"})
    seconds: float = field(default=0.0, metadata={"ge": 0, "help": "the least time the phase lasts"})
    percent: int = field(default=100, metadata={"ge": 1, "le": 100, "help": "share of requests mirrored"})
    max_disagreement: float = field(
        default=0.02, metadata={"ge": 0.0001, "le": 0.5, "help": "top-1 disagreement rate tolerated"}
    )


@dataclass(frozen=True)
class RolloutSpec:
    model: str = field(metadata={"help": "the model to roll out a new version of"})
    candidate: str = field(metadata={"help": "the version to roll out"})
    baseline: str = field(default="", metadata={"help": "the version it is judged against"})
    steps: tuple[int, ...] = field(
        default=(5, 25, 50), metadata={"ge": 1, "le": 100, "min_items": 1, "help": "traffic percent per step"}
    )
    step_seconds: float = field(default=120.0, metadata={"ge": 0, "help": "the least time per step"})
    step_requests: int = field(
        default=200, metadata={"ge": 0, "help": "the least candidate requests per step"}
    )
    checks: tuple[str, ...] = field(
        default=("errors", "latency", "accuracy"), metadata={"choices": CHECKS[:3], "help": "what is judged"}
    )
    latency_slo_ms: float = field(default=250.0, metadata={"ge": 0.001, "help": "slower is a bad event"})
    alpha: float = field(default=0.05, metadata={"ge": 0.0001, "le": 0.5, "help": "false-alarm bound"})
    max_prediction_psi: float | None = field(
        default=None, metadata={"ge": 0, "help": "PSI of the arms' predicted classes that fails a step"}
    )
    idle_seconds: float = field(default=60.0, metadata={"ge": 0.1, "help": "no candidate traffic: waiting"})
    deadline_seconds: float = field(
        default=0.0, metadata={"ge": 0, "help": "waiting longer than this rolls back (0: never)"}
    )
    shadow: ShadowPhase | None = field(default=None, metadata={"help": "mirror before any user sees it"})

    def __post_init__(self) -> None:
        for name in ("candidate", "baseline"):
            value = getattr(self, name)
            if value and not value.isdigit():
                raise ValueError(f"{name}: expected a version number such as 3, got {quoted(value)}")
        if not self.model:
            raise ValueError("model: expected a model name")
        if not self.candidate:
            raise ValueError("candidate: expected the version to roll out")
        if self.baseline and self.baseline == self.candidate:
            raise ValueError(f"the candidate and the baseline are both version {self.candidate}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"steps: expected increasing percentages, got {list(self.steps)}")
        if len(set(self.checks)) != len(self.checks):
            raise ValueError(f"checks: each check once, got {list(self.checks)}")

    @property
    def judged(self) -> tuple[str, ...]:
        """The sequential checks this rollout runs (the shadow check with a [shadow] phase)."""
        return (("shadow",) if self.shadow is not None else ()) + tuple(c for c in CHECKS if c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = to_table(self, defaults=True)
        out["shadow"] = to_table(self.shadow, defaults=True) if self.shadow is not None else None
        return out


def spec_from_dict(table: Any, where: str = "rollout spec") -> RolloutSpec:
    """The spec from a parsed table; InvalidInput naming the key when it does not check out."""
    if isinstance(table, dict):
        table = {k: v for k, v in table.items() if v is not None}  # JSON null: the default
        for key in ("candidate", "baseline"):
            if isinstance(table.get(key), int) and not isinstance(table.get(key), bool):
                table[key] = str(table[key])  # candidate = 3 means version "3"
    try:
        return from_table(RolloutSpec, table, where)
    except SchemaError as e:
        raise InvalidInput(str(e)) from None


def parse_spec(
    text: str, overrides: dict[str, Any] | None = None, where: str = "rollout spec"
) -> RolloutSpec:
    """A spec from TOML or JSON text (JSON when it starts with ``{``), ``overrides`` (non-empty values)
    taking precedence; an empty text gives the defaults."""
    table: Any = {}
    stripped = text.strip()
    if stripped:
        try:
            table = json.loads(stripped) if stripped.startswith("{") else tomllib.loads(stripped)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise InvalidInput(f"{where}: not valid JSON or TOML: {e}") from None
        if not isinstance(table, dict):
            raise InvalidInput(f"{where}: expected a table (object) of settings")
    table.update({k: v for k, v in (overrides or {}).items() if v not in (None, "", [], ())})
    return spec_from_dict(table, where)
