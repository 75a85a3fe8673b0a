"""What a load run records and reports: every request in a ``Recorder``, a measured window
summarized as a ``LoadResult``, timelines cut from a recorder, and results written as JSON or CSV."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

__all__ = ["SHED", "LoadResult", "Recorder", "error_code", "timeline", "write_csv", "write_json"]

# The statuses a server answers with when it sheds load (queue full, queue time limit passed).
SHED = ("RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED")


@dataclass
class LoadResult:
    concurrency: int  # closed loop: workers; open loop: the most requests in flight at once
    duration_s: float
    requests: int  # successful requests that started in the measured window
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    mode: str = "closed"
    rate_rps: float = 0.0  # open loop: the offered mean rate
    sent: int = 0  # requests started in the measured window, whatever their outcome
    mean_ms: float = 0.0
    max_lag_ms: float = 0.0  # open loop: how late the generator started a request, at worst
    p99_from_send_ms: float = 0.0  # open loop: p99 from the moment the request was actually sent
    served: dict[str, int] = field(default_factory=dict)  # version[/variant] -> successful requests
    mean_batch: float | None = None  # server-side rows per batch in the window (from /metrics)
    batches: int | None = None
    label: str = ""

    def row(self) -> str:
        batch = f", mean batch {self.mean_batch:.1f}" if self.mean_batch else ""
        load = f"rate {self.rate_rps:,.0f}/s" if self.mode == "open" else f"c={self.concurrency}"
        return (
            f"{self.label + ' ' if self.label else ''}{load}: {self.throughput_rps:,.0f} req/s, "
            f"p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
            f"max {self.max_ms:.1f} ms, errors {dict(self.errors) or 0}{batch}"
        )


def error_code(exc: BaseException) -> str:
    """The gRPC status name of a failed call (``RESOURCE_EXHAUSTED``...), else the exception's type."""
    code = getattr(exc, "code", None)
    try:
        status = code() if callable(code) else None
    except TypeError:  # a ``code`` that is not gRPC's
        status = None
    return str(getattr(status, "name", "")) or type(exc).__name__


class Recorder:
    """Every request of a run: scheduled start, actual send and end (perf_counter seconds), status,
    who served it.

    Kept as plain lists (a few floats per request, bounded by ``max_requests``) so that timelines
    (overload, recovery) can be cut from them afterwards."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.sent: list[float] = []
        self.ends: list[float] = []
        self.codes: list[str] = []
        self.served: list[str | None] = []

    def add(self, start: float, end: float, code: str, served: str | None, sent: float | None = None) -> None:
        self.starts.append(start)
        self.sent.append(start if sent is None else sent)
        self.ends.append(end)
        self.codes.append(code)
        self.served.append(served)

    def __len__(self) -> int:
        return len(self.starts)

    def summarize(
        self,
        since: float,
        until: float,
        duration: float,
        *,
        concurrency: int,
        mode: str,
        rate: float = 0.0,
        max_lag: float = 0.0,
        finished_by: float | None = None,
    ) -> LoadResult:
        """Requests that started in [since, until) (and ended by ``finished_by``, when given);
        throughput over ``duration`` seconds."""
        starts = np.asarray(self.starts)
        ends = np.asarray(self.ends)
        codes = np.asarray(self.codes, dtype=object)
        window = (starts >= since) & (starts < until)
        if finished_by is not None:
            window &= ends <= finished_by
        ok = window & (codes == "OK")
        lat = (ends[ok] - starts[ok]) * 1000
        from_send = (ends[ok] - np.asarray(self.sent)[ok]) * 1000
        p50, p90, p99 = np.percentile(lat, [50, 90, 99]) if lat.size else (0.0, 0.0, 0.0)
        errors = Counter(c for c in codes[window & ~ok])
        served = Counter(s for s, good in zip(self.served, ok) if good and s)
        return LoadResult(
            concurrency=concurrency,
            duration_s=duration,
            requests=int(ok.sum()),
            throughput_rps=float(ok.sum()) / duration,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            max_ms=float(lat.max()) if lat.size else 0.0,
            errors=dict(errors),
            mode=mode,
            rate_rps=rate,
            sent=int(window.sum()),
            mean_ms=float(lat.mean()) if lat.size else 0.0,
            max_lag_ms=max_lag * 1000,
            p99_from_send_ms=float(np.percentile(from_send, 99)) if lat.size else 0.0,
            served=dict(served),
        )


def timeline(rec: Recorder, start: float, bin_s: float = 0.1) -> list[dict[str, float]]:
    """Per ``bin_s`` of scheduled start: requests admitted (OK), shed, other errors, p99 of the
    admitted ones (ms)."""
    starts = np.asarray(rec.starts) - start
    lat = (np.asarray(rec.ends) - np.asarray(rec.starts)) * 1000
    codes = np.asarray(rec.codes, dtype=object)
    if not starts.size:
        return []
    bins = np.floor(starts / bin_s).astype(int)
    out = []
    for b in range(int(bins.max()) + 1):
        sel = bins == b
        ok = sel & (codes == "OK")
        shed = sel & np.isin(codes, SHED)
        out.append(
            {
                "t": b * bin_s,
                "ok": int(ok.sum()),
                "shed": int(shed.sum()),
                "other": int((sel & ~ok & ~shed).sum()),
                "p99_ms": float(np.percentile(lat[ok], 99)) if ok.any() else float("nan"),
            }
        )
    return out


def write_json(results: Sequence[LoadResult], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


def write_csv(results: Sequence[LoadResult], path: Path) -> None:
    names = [f.name for f in fields(LoadResult)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in results:
            row = asdict(r)
            for key in ("errors", "served"):
                row[key] = ";".join(f"{k}={v}" for k, v in sorted(row[key].items()))
            writer.writerow(row)
