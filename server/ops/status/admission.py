"""The status page's "Admission and reliability" section: what the server holds against its admission bounds
(request bytes and RPCs in flight), what it refused, flag evaluations that failed, loaded versions whose files
changed on disk, the drain, and under ``--workers`` the workers by state and their restarts.

    admission_section(state.admission, *history.levels())   # -> HTML
"""

from __future__ import annotations

from html import escape

from ortserve.ops.status.history import Level
from ortserve.ops.status.state import Admission

__all__ = ["admission_section", "alerts"]


def _size(n: float) -> str:
    """Bytes for reading: ``0 B``, ``512 B``, ``1.5 KiB``, ``3 MiB``, ``1.51 GiB``."""
    units = ["B", "KiB", "MiB", "GiB"]
    while n >= 1024 and len(units) > 1:
        n /= 1024
        units.pop(0)
    return f"{n:.3g} {units[0]}" if n < 1000 else f"{n:,.0f} {units[0]}"


def _held(now: float, bound: int, unit: str) -> str:
    text = _size(now) if unit == "bytes" else f"{now:.0f}"
    if not bound:
        return f"{text} <span class=dim>(no bound)</span>"
    share = now / bound
    kind = "bad" if share >= 0.9 else "warn" if share >= 0.5 else ""
    of = _size(bound) if unit == "bytes" else str(bound)
    return f'<span class="{kind}">{text}</span> of {of} ({share * 100:.3g}%)'


def _count(value: float, warn: bool = True) -> str:
    return f'<span class="{"warn" if value and warn else ""}">{value:,.0f}</span>'


def alerts(admission: Admission, levels: dict[Level, float]) -> list[str]:
    """Lines an operator must see first (the page puts them under the tiles)."""
    out = []
    if admission.draining:
        out.append(
            "Draining: health says NOT_SERVING and new RPCs are refused UNAVAILABLE once --drain-delay has "
            "passed; every RPC received runs to its answer."
        )
    given_up = levels.get(("ortserve_workers", "given_up"), 0.0)
    if given_up:
        out.append(
            f"{given_up:.0f} worker(s) given up on after --worker-max-restarts restarts in a row; the others "
            "serve on (the supervisor's log says why they exited)."
        )
    return out


def admission_section(admission: Admission, levels: dict[Level, float], minute: dict[Level, float]) -> str:
    rows = [
        (
            "request bytes in flight (decoded inputs; <code>--max-inflight-bytes</code>)",
            _held(
                levels.get(("ortserve_inflight_request_bytes", ""), 0.0), admission.inflight_bytes, "bytes"
            ),
            "",
            "",
        )
    ]
    if admission.rpcs_in_flight is not None:
        rows.append(
            (
                "RPCs in flight (<code>--max-concurrent-rpcs</code>; health checks not counted)",
                _held(admission.rpcs_in_flight, admission.rpcs, "rpcs"),
                "",
                "",
            )
        )
    for reason, what in (("bytes", "over the bytes bound"), ("rpcs", "over the RPC bound")):
        key = ("ortserve_admission_rejected", reason)
        rows.append(
            (
                f"refused RESOURCE_EXHAUSTED, {what}",
                "",
                _count(minute.get(key, 0.0)),
                _count(levels.get(key, 0.0), warn=False),
            )
        )
    key = ("ortserve_flags_evaluation_errors", "")
    rows.append(
        (
            "flag evaluations that failed (the default variant served)",
            "",
            _count(minute.get(key, 0.0)),
            _count(levels.get(key, 0.0), warn=False),
        )
    )
    changed = sorted(k[1] for k, v in levels.items() if k[0] == "ortserve_model_files_changed" and v)
    rows.append(
        (
            "loaded versions whose files changed on disk",
            "",
            "",
            '<span class="warn">' + escape(", ".join(changed)) + "</span>" if changed else "none",
        )
    )
    workers = {k[1]: v for k, v in levels.items() if k[0] == "ortserve_workers"}
    if workers:
        states = " · ".join(
            f'<span class="{"bad" if state == "given_up" and workers[state] else ""}">'
            f"{state.replace('_', ' ')} {workers[state]:.0f}</span>"
            for state in ("running", "backing_off", "given_up")
            if state in workers
        )
        restarts = ("ortserve_worker_restarts", "")
        rows.append(("workers (restarted by the supervisor)", states, "", _count(levels.get(restarts, 0.0))))
    head = "<tr><th></th><th>now</th><th>last minute</th><th>since start</th></tr>"
    body = "".join(
        f'<tr><td>{what}</td><td>{now}</td><td class="num">{last}</td><td class="num">{total}</td></tr>'
        for what, now, last, total in rows
    )
    return f"<table>{head}{body}</table>"
