"""The ``--workers`` supervisor's restart policy: per worker, exponential back-off, and giving up on
a worker that keeps crashing while the others keep serving.

A worker that exits while serving is restarted after a delay that doubles with each exit in a
row (0.5 s, 1 s, 2 s ... at most 30 s); an exit counts as "in a row" when the worker had run less
than ``STABLE_S`` since it started. After ``max_restarts`` restarts in a row the worker is given
up on. The supervisor serves the figures with the workers' metrics:

    ortserve_worker_restarts_total{worker}      restarts of each worker
    ortserve_workers{state}                     workers running, backing_off (waiting to be
                                                restarted) and given_up
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKOFF_MAX_S", "BACKOFF_S", "STABLE_S", "Restarts"]

BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0


@dataclass
class _Worker:
    started: float = 0.0
    in_a_row: int = 0  # exits in a row, each within STABLE_S of the start before it
    due: float | None = None  # when it is to be restarted
    given_up: bool = False
    restarts: int = 0


class Restarts:
    def __init__(self, workers: int, max_restarts: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_restarts = max_restarts
        self._clock = clock
        self._workers = [_Worker() for _ in range(workers)]

    def started(self, index: int) -> None:
        w = self._workers[index]
        w.started, w.due = self._clock(), None

    def exited(self, index: int) -> float | None:
        """A worker exited while serving: the seconds before it is restarted, or None when it is
        given up on."""
        w = self._workers[index]
        now = self._clock()
        w.in_a_row = w.in_a_row + 1 if now - w.started < STABLE_S else 1
        if w.in_a_row > self.max_restarts:
            w.given_up = True
            return None
        delay = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (w.in_a_row - 1))
        w.due = now + delay
        return delay

    def in_a_row(self, index: int) -> int:
        return self._workers[index].in_a_row

    def due(self) -> list[int]:
        """The workers whose back-off is over (each is restarted now: counted)."""
        now = self._clock()
        ready = [i for i, w in enumerate(self._workers) if w.due is not None and w.due <= now]
        for i in ready:
            self._workers[i].due = None
            self._workers[i].restarts += 1
        return ready

    def next_due(self) -> float | None:
        """Seconds until the next restart is due (None when none is waiting)."""
        dues = [w.due for w in self._workers if w.due is not None]
        return max(0.0, min(dues) - self._clock()) if dues else None

    def cancel(self) -> None:
        """Stopping: no restart is to come."""
        for w in self._workers:
            w.due = None

    @property
    def given_up(self) -> list[int]:
        return [i for i, w in enumerate(self._workers) if w.given_up]

    def collect(self) -> Iterator[Any]:
        """A prometheus_client collector: the figures of the module docstring. (prometheus_client
        is imported here, not at the top: the supervisor imports it only once its multiprocess
        folder is set, which the workers it forks inherit.)"""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        restarts = CounterMetricFamily(
            "ortserve_worker_restarts",
            "Restarts of each --workers worker by the supervisor",
            labels=["worker"],
        )
        for i, w in enumerate(self._workers):
            restarts.add_metric([str(i)], w.restarts)
        yield restarts
        states = GaugeMetricFamily(
            "ortserve_workers", "--workers workers by state: running, backing_off, given_up", labels=["state"]
        )
        backing_off = sum(1 for w in self._workers if w.due is not None)
        given_up = len(self.given_up)
        states.add_metric(["running"], len(self._workers) - backing_off - given_up)
        states.add_metric(["backing_off"], backing_off)
        states.add_metric(["given_up"], given_up)
        yield states
