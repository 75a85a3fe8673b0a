"""The status page as one HTML document: inline CSS and inline SVG charts, no script, no external asset (the
server sends it with a Content-Security-Policy that allows neither), refreshed by the browser every few seconds
(``<meta http-equiv="refresh">``). Every string from the repository or the flags is escaped."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from html import escape

from ortserve.ops.status.admission import admission_section, alerts
from ortserve.ops.status.history import Key, Level, Point, Series, Shadow
from ortserve.ops.status.rollouts import rollouts_section
from ortserve.ops.status.state import FlagState, ModelState, ServerState

__all__ = ["Panel", "render_page"]

COLORS = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#65a30d", "#db2777")
Panel = Callable[[], tuple[str, str]]  # -> (title, HTML body): a section others can add (drift, rollouts...)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2937;
background:#f8fafc}
header{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:baseline;padding:.8em 1.5em;background:#0f172a;color:#e2e8f0}
header h1{font-size:1.25em;margin:0;color:#fff}header a{color:#93c5fd}header .mode{font-weight:600}
main{padding:0 1.5em 1.5em;max-width:1400px}
h2{font-size:1.05em;margin:1.4em 0 .5em}h3{font-size:1em;margin:1em 0 .3em}
.tiles{display:flex;flex-wrap:wrap;gap:.8em;margin-top:1em}
.tile{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:.5em 1em;min-width:9em}
.tile b{display:block;font-size:1.5em}.tile span{color:#64748b;font-size:.85em}
table{border-collapse:collapse;background:#fff;border:1px solid #e2e8f0;margin-bottom:.5em}
th,td{padding:.3em .7em;border-bottom:1px solid #eef2f7;text-align:left;vertical-align:middle}
th{background:#f1f5f9;font-weight:600;font-size:.85em;color:#475569}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#047857;font-weight:600}.bad{color:#b91c1c;font-weight:600}.warn{color:#b45309;font-weight:600}
.dim{color:#94a3b8}
.pill{display:inline-block;padding:0 .5em;border-radius:9px;background:#e0e7ff;color:#3730a3;font-size:.8em;margin:1px}
code{font-family:"DejaVu Sans Mono",monospace;font-size:.85em}
.note{color:#475569;margin:.3em 0}.hint{color:#64748b;font-size:.85em;margin:.2em 0 .6em}
footer{color:#94a3b8;font-size:.8em;padding:0 1.5em 1.5em}
svg{display:block}
"""


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "–"
    if unit == "ms":
        return f"{x * 1000:.3g} ms" if x * 1000 < 1000 else f"{x:.3g} s"
    if unit == "%":
        return f"{x * 100:.2f}%" if x else "0%"
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def spark(points: Iterable[tuple[float, float | None]], window: float, color: str, label: str) -> str:
    """A 160x34 line of (seconds before now, value) pairs; gaps where a value is None; the newest on the right.
    At most 80 points are drawn (the mean of neighbours beyond that) and coordinates are whole half-pixels:
    the page stays small and fast to render with hundreds of charts."""
    w, h, pad = 320, 68, 6  # in half-pixels (the viewBox); drawn at 160x34
    pts = [(t, v) for t, v in points if t <= window]  # oldest first, as the history keeps them
    if len(pts) > 80:
        k = math.ceil(len(pts) / 80)
        pts = [_mean(pts[i : i + k]) for i in range(0, len(pts), k)]
    values = [v for _, v in pts if v is not None]
    top = max(values) if values else 0.0
    scale = (h - 2 * pad) / top if top > 0 else 0.0
    xs = w / window
    lines: list[list[str]] = []
    current: list[str] = []
    for t, v in pts:
        if v is None:
            if current:
                lines.append(current)
            current = []
            continue
        current.append(f"{int(w - t * xs)},{int(h - pad - v * scale)}")
    if current:
        lines.append(current)
    body = "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="3" points="{" ".join(line)}"/>'
        if len(line) > 1
        else '<circle cx="{}" cy="{}" r="3" fill="{}"/>'.format(*line[0].split(","), color)
        for line in lines
    )
    return (
        f'<svg width="160" height="34" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}">'
        f'<title>{escape(label)}</title><line x1="0" y1="{h - pad}" x2="{w}" y2="{h - pad}" stroke="#e2e8f0" '
        f'stroke-width="2"/>{body}</svg>'
    )


def _mean(pts: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    values = [v for _, v in pts if v is not None]
    return pts[len(pts) // 2][0], (sum(values) / len(values) if values else None)


def _split_bar(flag: FlagState) -> str:
    w, h, x, parts = 220, 14, 0.0, []
    for i, s in enumerate(flag.splits):
        width = w * s.percent / 100
        color = "#cbd5e1" if flag.shadow and not s.version else COLORS[i % len(COLORS)]
        tip = escape(f"{s.variant} → {s.version or 'no shadow'}: {s.percent:.3g}%")
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="{h}" fill="{color}"><title>{tip}</title></rect>'
        )
        x += width
    return f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="split">{"".join(parts)}</svg>'


def _span(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 120 else f"{seconds:.0f} s"


def _shadows(shadow: dict[Key, Shadow], span: str) -> str:
    if not shadow:
        return ""
    rows = []
    for (model, primary, target), sh in shadow.items():
        agree = _num(sh.agreement, "%") if sh.agreement is not None else "–"
        cosine = f"{sh.cosine:.5f}" if sh.cosine is not None else "–"
        rows.append(
            f"<tr><td>{escape(model)}</td><td>{escape(primary)} → {escape(target)}</td>"
            f'<td class="num">{_num(sh.mirrored)}</td><td class="num">{_num(sh.failed)}</td>'
            f'<td class="num">{_num(sh.dropped)}</td><td class="num">{agree}</td><td class="num">{cosine}</td></tr>'
        )
    head = (
        "<tr><th>model</th><th>primary → shadow</th><th>compared</th><th>failed</th><th>dropped</th>"
        "<th>top-1 agreement</th><th>mean cosine</th></tr>"
    )
    return f"<h3>Shadow comparisons, last {span}</h3><table>{head}{''.join(rows)}</table>"


def _traffic(series: dict[Key, Series], window: float) -> str:
    if not series:
        return '<p class="note">No inference requests yet (or not sampled yet).</p>'
    rows = []
    minutes = _span(window)
    for i, ((model, version, variant), s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = [(s.now - p.t, p) for p in s.points]
        err = s.last.error_ratio
        rows.append(
            "<tr>"
            f"<td>{escape(model)}</td><td>{escape(version) or '<span class=dim>before routing</span>'}</td>"
            f"<td>{escape(variant) or '<span class=dim>–</span>'}</td>"
            f'<td class="num">{_num(s.last.rate)}</td><td class="num">{_num(s.last.p99_s, "ms")}</td>'
            f'<td class="num {"bad" if err else ""}">{_num(err, "%")}</td>'
            f"<td>{spark(((age, p.rate) for age, p in pts), window, color, f'requests/s over {minutes}')}</td>"
            f"<td>{spark(((age, p.p99_s) for age, p in pts), window, color, f'p99 latency over {minutes}')}</td>"
            f"<td>{spark(((age, p.error_ratio) for age, p in pts), window, '#dc2626', f'error ratio over {minutes}')}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>model</th><th>version</th><th>variant</th><th>req/s</th><th>p99</th><th>errors</th>"
        f"<th>req/s, {minutes}</th><th>p99, {minutes}</th><th>errors, {minutes}</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _psi(value: float | None) -> str:
    if value is None:
        return '<span class="dim">–</span>'
    kind = "bad" if value > 0.25 else "warn" if value > 0.1 else ""
    return f'<span class="{kind}">{value:.3f}</span>'


def _drift(values: dict[str, float] | None) -> str:
    """PSI rules of thumb: under 0.1 stable, 0.1-0.25 moderate, over 0.25 a shift."""
    if not values:
        return '<span class="dim">–</span>'
    features = values.get("ortserve_feature_drift_psi")
    predictions = values.get("ortserve_prediction_drift_psi")
    return f"inputs {_psi(features)} · predictions {_psi(predictions)}"


def _models(models: tuple[ModelState, ...], drift: dict[tuple[str, str], dict[str, float]]) -> str:
    if not models:
        return '<p class="note">No model in the repository.</p>'
    out = []
    for m in models:
        rows = []
        for v in m.versions:
            state = (
                '<span class="ok">ready</span>'
                if v.ready
                else f'<span class="bad">unavailable</span> {escape(v.reason)}'
            )
            sha = (
                f'<code title="{escape(v.sha256)}">{escape(v.sha256[:12])}</code>'
                if v.sha256
                else '<span class="dim">no manifest</span>'
            )
            signed = {"yes": '<span class="ok">yes</span>', "no": "no"}.get(
                v.signed, '<span class="dim">–</span>'
            )
            routes = "".join(f'<span class="pill">{escape(r)}</span>' for r in v.routes)
            rows.append(
                f"<tr><td>{escape(v.version)}</td><td>{state}</td><td>{'default' if v.default else ''}</td>"
                f"<td>{sha}</td><td>{signed}</td><td>{'yes' if v.card else ''}</td>"
                f"<td>{_drift(drift.get((m.name, v.version)))}</td><td>{routes}</td></tr>"
            )
        head = (
            "<tr><th>version</th><th>state</th><th></th><th>sha256</th><th>signed</th><th>card</th>"
            "<th>drift (PSI, largest)</th><th>flag variants</th></tr>"
        )
        default = f" · default version {escape(m.default_version)}" if m.default_version else ""
        out.append(
            f"<h3>{escape(m.name)}<span class=dim>{default}</span></h3><table>{head}{''.join(rows)}</table>"
        )
    return "".join(out)


def _flags(state: ServerState) -> str:
    info = f"file <code>{escape(state.flags_path)}</code>" if state.flags_path else ""
    if state.flags_revision is not None:
        info += f" · revision {state.flags_revision}"
    if state.flags_error:
        info += f' · <span class="bad">last document refused: {escape(state.flags_error)}</span>'
    if not state.flags:
        return f'<p class="note">No flags: every request gets its model\'s default version. {info}</p>'
    rows = []
    for f in state.flags:
        kind = "shadow" if f.shadow else "route"
        status = (
            '<span class="ok">enabled</span>'
            if f.enabled
            else '<span class="bad">disabled</span> (kill switch)'
        )
        variants = "".join(
            f'<span class="pill">{escape(n)} → {escape(v) or "none"}</span>' for n, v in f.variants
        )
        if f.splits and f.enabled:
            legend = ", ".join(escape(f"{s.variant} {s.percent:.3g}%") for s in f.splits)
            how = f"{_split_bar(f)}<div class=hint>{legend}</div>"
        elif f.rules and f.enabled:
            how = f"<code>{escape(f.rules[:300])}</code>"
        else:
            how = f"everyone: {escape(f.default_variant)}"
        rows.append(
            f"<tr><td><code>{escape(f.key)}</code></td><td>{kind}</td><td>{status}</td>"
            f"<td>{escape(f.default_variant)}</td><td>{variants}</td><td>{how}</td></tr>"
        )
    head = (
        "<tr><th>flag</th><th>kind</th><th>state</th><th>default</th><th>variants</th><th>traffic</th></tr>"
    )
    return f'<p class="note">{info}</p><table>{head}{"".join(rows)}</table>'


def _tiles(state: ServerState, series: dict[Key, Series]) -> str:
    versions = [v for m in state.models for v in m.versions]
    rate = sum(s.last.rate for s in series.values())
    weighted = [(s.last.error_ratio or 0.0) * s.last.rate for s in series.values()]
    errors = sum(weighted) / rate if rate else None
    tiles = [
        (str(len(state.models)), "models"),
        (f"{sum(v.ready for v in versions)} / {len(versions)}", "versions ready"),
        (_num(rate), "requests/s, last minute"),
        (_num(errors, "%"), "errors, last minute"),
        (str(sum(1 for f in state.flags if f.enabled)), "flags enabled"),
    ]
    return "".join(f'<div class="tile"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in tiles)


def render_page(
    state: ServerState | None,
    series: dict[Key, Series],
    *,
    window: float,
    refresh: int,
    shadow: dict[Key, Shadow] | None = None,
    drift: dict[tuple[str, str], dict[str, float]] | None = None,
    panels: Iterable[Panel] = (),
    levels: tuple[dict[Level, float], dict[Level, float]] = ({}, {}),
) -> str:
    """``levels``: ``MetricsHistory.levels()`` (latest values, last minute's increases)."""
    started = time.perf_counter()
    state = state or ServerState("server", notes=("starting",))
    held = max((s.now - s.points[0].t for s in series.values() if s.points), default=0.0)
    span = min(window, max(60.0, held))  # the charts span what the history holds (a minute at least)
    taken = time.strftime("%H:%M:%S UTC", time.gmtime(state.taken))
    sections = [
        f'<section class="tiles">{_tiles(state, series)}</section>',
        *(f'<p class="note bad">{escape(a)}</p>' for a in alerts(state.admission, levels[0])),
        *(f'<p class="note">{escape(n)}</p>' for n in state.notes),
        f"<section><h2>Traffic</h2><p class=hint>per model version and flag variant: the last minute, and charts "
        f"over the last {_span(span)} (kept: {_span(window)}; errors: outcomes other than ok and cancelled)</p>"
        f"{_traffic(series, span)}</section>",
        rollouts_section(state.rollouts, state.taken),
        f"<section><h2>Admission and reliability</h2>{admission_section(state.admission, *levels)}</section>",
        f"<section><h2>Models</h2>{_models(state.models, drift or {})}</section>",
        f"<section><h2>Flags</h2>{_flags(state)}{_shadows(shadow or {}, _span(span))}</section>",
    ]
    for panel in panels:
        title, body = panel()
        sections.append(f"<section><h2>{escape(title)}</h2>{body}</section>")
    head = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}"><link rel="icon" href="data:,">'
        f"<title>ortserve status</title><style>{CSS}</style></head><body>"
        f'<header><h1>ortserve</h1><span class="mode">{escape(state.mode)}</span>'
        f"<span>state at {taken} · refreshes every {refresh} s</span>"
        '<span><a href="/metrics">/metrics</a> · <a href="/status.json">/status.json</a></span></header><main>'
    )
    took = (time.perf_counter() - started) * 1000
    return f"{head}{''.join(sections)}</main><footer>rendered in {took:.1f} ms</footer></body></html>"


def points_json(points: tuple[Point, ...], now: float) -> list[dict[str, float | None]]:
    """Points for JSON: ``t`` in seconds relative to the latest sample (<= 0)."""
    return [
        {
            "t": p.t - now,
            "rate": p.rate,
            "error_ratio": p.error_ratio,
            "p99_s": p.p99_s,
            "requests": p.requests,
        }
        for p in points
    ]
