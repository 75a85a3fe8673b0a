"""What a rollout counts for each of its two arms (the baseline and the candidate version): cumulative,
mergeable counters, so that the tallies of several worker processes add up and the counts of an interval
or a step are differences of two snapshots.

    arm = Arm()
    arm.add_request(ok=True, duration_s=0.004, slow=False)
    both = Tally(); both.arms["candidate"].merge(arm)
    step = now.minus(at_step_start)          # counts since the step began
    step.arms["candidate"].quantile(0.99)    # seconds, from a log-spaced histogram (within ~10%)

Latency is a histogram with log-spaced buckets (20% wide, 0.1 ms to about 2 minutes), good for the
report's quantiles to about a tenth of the value.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ARMS", "BUCKETS", "Arm", "Ledger", "Tally"]

ARMS = ("baseline", "candidate")
_LOWEST, _GROWTH = 1e-4, 1.2
BUCKETS = tuple(_LOWEST * _GROWTH**k for k in range(80))  # upper edges, seconds; one more bucket above
MAX_CLASSES = 1000  # distinct predicted classes kept per arm (more fall into one "other" count)

_COUNTS = ("requests", "errors", "ok", "slow", "labelled", "incorrect", "compared", "disagreed", "other")


@dataclass
class Arm:
    requests: int = 0  # requests the flag routed to this arm that ended (ok or an error)
    errors: int = 0  # ... that ended with an error (every outcome but ok and cancelled)
    ok: int = 0
    slow: int = 0  # ok requests slower than the latency SLO
    labelled: int = 0  # rows with ground truth (feedback) joined
    incorrect: int = 0  # ... whose label was not the prediction
    compared: int = 0  # shadow: rows compared with the primary (candidate arm), plus failed mirrors
    disagreed: int = 0  # ... whose top-1 differed, plus failed mirrors
    other: int = 0  # predictions of classes beyond MAX_CLASSES
    latency: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    classes: dict[int, int] = field(default_factory=dict)  # predicted class -> rows

    # -- counting (on the event loop: a few additions) --------------------------------------------
    def add_request(self, ok: bool, duration_s: float, slow: bool) -> None:
        self.requests += 1
        if ok:
            self.ok += 1
            self.slow += slow
            self.latency[bisect.bisect_left(BUCKETS, duration_s)] += 1
        else:
            self.errors += 1

    def add_classes(self, labels: Any) -> None:
        for label in labels:
            k = int(label)
            if k in self.classes or len(self.classes) < MAX_CLASSES:
                self.classes[k] = self.classes.get(k, 0) + 1
            else:
                self.other += 1

    # -- arithmetic --------------------------------------------------------------------------------
    def merge(self, other: Arm) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency = [a + b for a, b in zip(self.latency, other.latency)]
        for k, v in other.classes.items():
            self.classes[k] = self.classes.get(k, 0) + v

    def minus(self, earlier: Arm) -> Arm:
        out = Arm()
        for name in _COUNTS:
            setattr(out, name, getattr(self, name) - getattr(earlier, name))
        out.latency = [a - b for a, b in zip(self.latency, earlier.latency)]
        out.classes = {k: v - earlier.classes.get(k, 0) for k, v in self.classes.items()}
        return out

    # -- figures -----------------------------------------------------------------------------------
    def quantile(self, q: float) -> float | None:
        """The q-quantile of the ok requests' latency in seconds (None without any): the geometric middle
        of the bucket it falls in."""
        total = sum(self.latency)
        if total <= 0:
            return None
        rank, seen = q * total, 0
        for i, n in enumerate(self.latency):
            seen += n
            if seen >= rank and n:
                if i == 0:
                    return BUCKETS[0] / math.sqrt(_GROWTH)
                return BUCKETS[i - 1] * math.sqrt(_GROWTH)
        return BUCKETS[-1] * math.sqrt(_GROWTH)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        # sparse: most buckets are empty
        out["latency"] = {str(i): n for i, n in enumerate(self.latency) if n}
        out["classes"] = {str(k): v for k, v in sorted(self.classes.items())}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arm:
        arm = cls()
        for name in _COUNTS:
            setattr(arm, name, int(d.get(name, 0)))
        for i, n in d.get("latency", {}).items():
            if 0 <= int(i) < len(arm.latency):
                arm.latency[int(i)] = int(n)
        arm.classes = {int(k): int(v) for k, v in d.get("classes", {}).items()}
        return arm


@dataclass
class Tally:
    arms: dict[str, Arm] = field(default_factory=lambda: {name: Arm() for name in ARMS})

    def merge(self, other: Tally) -> None:
        for name in ARMS:
            self.arms[name].merge(other.arms[name])

    def minus(self, earlier: Tally) -> Tally:
        return Tally({name: self.arms[name].minus(earlier.arms[name]) for name in ARMS})

    def copy(self) -> Tally:
        return Tally.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {name: self.arms[name].to_dict() for name in ARMS}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Tally:
        d = d or {}
        return cls({name: Arm.from_dict(d.get(name, {})) for name in ARMS})

    @classmethod
    def total(cls, tallies: list[Tally]) -> Tally:
        out = cls()
        for t in tallies:
            out.merge(t)
        return out


@dataclass
class Ledger:
    """A rollout's counts over process lifetimes: each process (a worker, or the server itself) reports
    its cumulative tally under its pid; when a worker comes back with another pid, what the old process
    counted moves into ``base`` and the new one counts from zero. ``total()`` is everything counted."""

    base: Tally = field(default_factory=Tally)
    seen: dict[str, tuple[int, Tally]] = field(default_factory=dict)

    def update(self, worker: str, pid: int, tally: Tally) -> None:
        old = self.seen.get(worker)
        if old is not None and old[0] != pid:
            self.base.merge(old[1])
        self.seen[worker] = (pid, tally)

    def total(self) -> Tally:
        return Tally.total([self.base, *(t for _, t in self.seen.values())])

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "seen": {w: {"pid": pid, "tally": t.to_dict()} for w, (pid, t) in self.seen.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Ledger:
        d = d or {}
        seen = {w: (int(v["pid"]), Tally.from_dict(v["tally"])) for w, v in d.get("seen", {}).items()}
        return cls(Tally.from_dict(d.get("base")), seen)
