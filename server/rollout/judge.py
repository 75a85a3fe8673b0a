"""The canary judge: an anytime-valid sequential test on counts of bad events.

Each bad event (an error, a request over the latency SLO, a wrong answer from feedback) lands on the
candidate or on the baseline. If the candidate is no worse than the baseline, an event lands on it with
probability at most its share of the traffic ``p`` at that time. The test's evidence against that is
an e-process: a mixture, over odds ratios ``theta > 1``, of the likelihood ratios of "events land on the
candidate with odds ``theta`` times its traffic odds" against "with its traffic share":

    q(theta, p) = theta p / (theta p + 1 - p)
    E_n = sum_k w_k prod_i (q(theta_k, p_i) / p_i)^X_i ((1 - q(theta_k, p_i)) / (1 - p_i))^(1 - X_i)

Under the null each factor has expectation at most 1 (for theta >= 1 the ratio grows with X_i, and
``P(X_i = 1) <= p_i``), so ``E_n`` is a test supermartingale and by Ville's inequality
``P(sup_n E_n >= 1/alpha) <= alpha``: the judge may look after every event, at any traffic share, and
still raise a false alarm with probability at most ``alpha``. ``benchmarks/judge_sim.py`` checks this
and measures how many events a 2x or 3x worse candidate takes to be caught.

    test = SequentialTest(alpha=0.05)
    test.observe(candidate=3, baseline=1, share=0.05)   # events since the last look, at 5% traffic
    test.rejected, test.e_value

Counts arrive per interval, not one event at a time. Given the requests each arm served in the interval,
under the null every request is bad with the same probability, so which of the ``k`` bad events landed
on the candidate is a draw without replacement (hypergeometric); the factor above treats them as ``k``
independent draws at the observed share (binomial). The factor is convex in the candidate's count, and
Hoeffding's comparison theorem (1963, Theorem 4) puts the expectation of a convex function of the
hypergeometric under that of the binomial: the interval's factor still has expectation at most 1. This
is why the controller passes the *observed* request share of the interval rather than the flag weight:
sticky bucketing by targeting key makes the realised share differ from the weight (a few heavy users
land on one side), and the observed share is what the null conditions on.

``Judge`` runs one test per check (errors, latency, accuracy, shadow) and rejects when the *mean* of
their e-values reaches ``1 / alpha``: an average of e-processes on one history is an e-process, so the
false-alarm bound holds for all checks together (never weaker than Bonferroni's ``K / alpha`` on the
largest, and stronger when several checks lean the same way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["THETAS", "Judge", "SequentialTest"]

# Odds ratios mixed over (equal weights): from barely worse to an order of magnitude worse.
THETAS = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass
class SequentialTest:
    alpha: float = 0.05
    thetas: tuple[float, ...] = THETAS
    candidate_events: int = 0
    baseline_events: int = 0
    _log_lr: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.thetas or min(self.thetas) <= 1:
            raise ValueError("every odds ratio of the mixture must be > 1")
        if not self._log_lr:
            self._log_lr = [0.0] * len(self.thetas)

    def observe(self, candidate: int, baseline: int, share: float) -> None:
        """Count bad events seen since the last call while the candidate had ``share`` (0..1) of the traffic."""
        if candidate < 0 or baseline < 0:
            raise ValueError("event counts cannot be negative")
        if not candidate and not baseline:
            return
        self.candidate_events += candidate
        self.baseline_events += baseline
        if share <= 0.0 or share >= 1.0:
            return  # all traffic on one side: where an event lands says nothing about the other
        for k, theta in enumerate(self.thetas):
            q = theta * share / (theta * share + 1.0 - share)
            self._log_lr[k] += candidate * math.log(q / share) + baseline * math.log(
                (1.0 - q) / (1.0 - share)
            )

    @property
    def log_e_value(self) -> float:
        top = max(self._log_lr)
        return top + math.log(sum(math.exp(x - top) for x in self._log_lr) / len(self._log_lr))

    @property
    def e_value(self) -> float:
        """The evidence that the candidate is worse; the test rejects at ``1 / alpha``."""
        return math.exp(min(self.log_e_value, 700.0))

    @property
    def rejected(self) -> bool:
        return self.log_e_value >= math.log(1.0 / self.alpha)

    def to_dict(self) -> dict[str, object]:
        return {
            "alpha": self.alpha,
            "candidate_events": self.candidate_events,
            "baseline_events": self.baseline_events,
            "e_value": self.e_value,
            "log_lr": list(self._log_lr),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SequentialTest:
        """The test as ``to_dict`` saved it (a rollout survives a restart)."""
        test = cls(alpha=float(data["alpha"]))  # type: ignore[arg-type]
        test.candidate_events = int(data["candidate_events"])  # type: ignore[call-overload]
        test.baseline_events = int(data["baseline_events"])  # type: ignore[call-overload]
        log_lr = [float(x) for x in data["log_lr"]]  # type: ignore[attr-defined]
        if len(log_lr) != len(test.thetas):
            raise ValueError("saved test has a different mixture")
        test._log_lr = log_lr
        return test


class Judge:
    """One ``SequentialTest`` per check; the evidence is their mean e-value."""

    def __init__(self, checks: tuple[str, ...], alpha: float = 0.05) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self.tests = {name: SequentialTest(alpha=alpha) for name in checks}

    def observe(self, check: str, candidate: int, baseline: int, share: float) -> None:
        self.tests[check].observe(candidate, baseline, share)

    @property
    def log_e_value(self) -> float:
        if not self.tests:
            return 0.0
        logs = [t.log_e_value for t in self.tests.values()]
        top = max(logs)
        return top + math.log(sum(math.exp(x - top) for x in logs) / len(logs))

    @property
    def e_value(self) -> float:
        return math.exp(min(self.log_e_value, 700.0))

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha

    @property
    def rejected(self) -> bool:
        return self.log_e_value >= math.log(self.threshold)

    def worst(self) -> str:
        """The check with the most evidence against the candidate ("" without checks)."""
        return max(self.tests, key=lambda name: self.tests[name].log_e_value, default="")

    def per_check(self) -> dict[str, dict[str, float]]:
        """Each check's e-value and bad events on either arm (the evidence behind a decision, the report)."""
        return {
            name: {
                "e_value": t.e_value,
                "candidate_events": t.candidate_events,
                "baseline_events": t.baseline_events,
            }
            for name, t in self.tests.items()
        }

    def to_dict(self) -> dict[str, object]:
        return {"alpha": self.alpha, "tests": {name: t.to_dict() for name, t in self.tests.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Judge:
        tests = data["tests"]
        assert isinstance(tests, dict)
        judge = cls(tuple(tests), float(data["alpha"]))  # type: ignore[arg-type]
        judge.tests = {name: SequentialTest.from_dict(t) for name, t in tests.items()}
        return judge
