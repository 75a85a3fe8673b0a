"""What a version's batches cost and how fast its rows arrive, learnt online from the batches it
runs: the batcher's evidence for sizing batches (``[batching] adaptive``) and for running a tiny
batch on the event loop's thread rather than paying the thread hop (``inline_max_us``).

The cost of a batch of ``n`` rows is modelled as ``fixed + per_row * n`` (a call's own overhead
plus the work per row), fitted by exponentially weighted least squares over recent batches, so it
follows a machine whose load changes. Until the batches seen differ in size, the fit cannot
separate the two terms and the model assumes no fixed cost (``per_row = mean time / mean rows``):
the assumption under which waiting for more rows never pays, so the batcher does not wait on a
guess.
"""

from __future__ import annotations

__all__ = ["ArrivalRate", "CostModel"]


class CostModel:
    """``predict(n)``: the expected compute seconds of an ``n``-row batch (None before
    ``min_batches`` batches were seen)."""

    __slots__ = ("_decay", "_min", "_n", "_sw", "_sx", "_sxx", "_sxy", "_sy", "fixed", "per_row")

    def __init__(self, decay: float = 0.98, min_batches: int = 8) -> None:
        self._decay = decay
        self._min = min_batches
        self._n = 0
        self._sw = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self.fixed = 0.0
        self.per_row = 0.0

    @property
    def ready(self) -> bool:
        return self._n >= self._min

    def observe(self, rows: int, seconds: float) -> None:
        d = self._decay
        x = float(max(rows, 1))
        self._sw = self._sw * d + 1.0
        self._sx = self._sx * d + x
        self._sy = self._sy * d + seconds
        self._sxx = self._sxx * d + x * x
        self._sxy = self._sxy * d + x * seconds
        self._n += 1
        mean_x, mean_y = self._sx / self._sw, self._sy / self._sw
        var = self._sxx / self._sw - mean_x * mean_x
        slope = (self._sxy / self._sw - mean_x * mean_y) / var if var > 0.25 else -1.0
        if slope > 0 and mean_y - slope * mean_x >= 0:
            self.per_row, self.fixed = slope, mean_y - slope * mean_x
        else:  # sizes alike (or a fit that makes no sense): all of the cost is per row
            self.per_row, self.fixed = mean_y / mean_x, 0.0

    def predict(self, rows: int) -> float | None:
        if self._n < self._min:
            return None
        return self.fixed + self.per_row * max(rows, 1)


class ArrivalRate:
    """Rows per second arriving at a batcher, smoothed over about ``horizon_s``."""

    __slots__ = ("_horizon", "_last", "_rows", "rate")

    def __init__(self, now: float, horizon_s: float = 0.05) -> None:
        self._horizon = horizon_s
        self._last = now
        self._rows = 0
        self.rate = 0.0

    def arrived(self, rows: int, now: float) -> None:
        self._rows += max(rows, 1)
        elapsed = now - self._last
        if elapsed >= self._horizon / 4:
            weight = min(elapsed / self._horizon, 1.0)
            self.rate += weight * (self._rows / elapsed - self.rate)
            self._rows, self._last = 0, now
