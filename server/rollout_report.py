"""The A/B report of a rollout (Admin ``GetRolloutReport``'s JSON) as text and as a PNG, for
``ortserve rollout report``. matplotlib (``pip install 'ortserve[plots]'``) is imported by ``plot`` only.

    text(report)                      # the table the CLI prints
    plot(report, Path("rollout.png")) # traffic, error rate, p99 latency, accuracy and the evidence over time
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

__all__ = ["plot", "text"]

ARMS = ("baseline", "candidate")


def _pct(rate: dict[str, Any]) -> str:
    if rate.get("rate") is None:
        return "–"
    low, high = rate["ci95"]
    return f"{rate['rate']:.2%} [{low:.2%}, {high:.2%}]"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def text(report: dict[str, Any]) -> str:
    judge = report["judge"]
    out = [
        f"rollout {report['rollout']} of {report['model']}: {report['state']} ({report['step']})",
        f"started {report['started']} by {report['started_by']}; last change {report['updated']}",
        f"decision: {report['decision']}",
        "",
        f"{'variant':10} {'version':>7} {'requests':>9}  {'error rate (95% CI)':27} {'over SLO (95% CI)':27} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}  {'labelled':>8}  accuracy (95% CI)",
    ]
    for v in report["variants"]:
        lat = v["latency_ms"]
        out.append(
            f"{v['arm']:10} {v['version']:>7} {v['requests']:>9}  {_pct(v['error_rate']):27} {_pct(v['slow_rate']):27} "
            f"{_ms(lat['p50']):>7} {_ms(lat['p90']):>7} {_ms(lat['p99']):>7}  {v['labelled']:>8}  {_pct(v['accuracy'])}"
        )
        if "shadow_disagreement" in v:
            out.append(f"{'':10} shadow top-1 disagreement {_pct(v['shadow_disagreement'])}")
    out += [
        "",
        f"judge: e-value {judge['e_value']:.3g}, rollback at {judge['threshold']:g} (alpha {judge['alpha']:g}); "
        "per check (bad events on the candidate / on the baseline):",
    ]
    for name, t in judge["tests"].items():
        out.append(
            f"  {name:9} e-value {t['e_value']:<10.3g} {t['candidate_events']} / {t['baseline_events']}"
        )
    if report.get("prediction_psi") is not None:
        out.append(f"predicted-class PSI between the variants: {report['prediction_psi']:.4f}")
    if report.get("evidence"):
        out.append(f"evidence: check {report['evidence'].get('check')}")
    return "\n".join(out)


def _series(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Per point: minutes since the start, weight, e-value, and per arm the error rate and accuracy over
    the interval since the previous point, and the interval's p99."""
    t0 = history[0]["t"] if history else 0.0
    s: dict[str, Any] = {
        "t": [],
        "weight": [],
        "e": [],
        **{a: {"err": [], "acc": [], "p99": []} for a in ARMS},
    }
    prev: dict[str, Any] | None = None
    for p in history:
        s["t"].append((p["t"] - t0) / 60.0)
        s["weight"].append(p["weight"])
        s["e"].append(max(p["e_value"], 1e-6))
        for a in ARMS:
            now, before = p["arms"][a], (prev["arms"][a] if prev else None)
            req = now["requests"] - (before["requests"] if before else 0)
            err = now["errors"] - (before["errors"] if before else 0)
            lab = now["labelled"] - (before["labelled"] if before else 0)
            wrong = now["incorrect"] - (before["incorrect"] if before else 0)
            s[a]["err"].append(err / req if req > 0 else float("nan"))
            s[a]["acc"].append(1 - wrong / lab if lab > 0 else float("nan"))
            s[a]["p99"].append(now.get("p99_ms") if now.get("p99_ms") is not None else float("nan"))
        prev = p
    return s


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = _series(report.get("history", []))
    fig, axes = plt.subplots(5, 1, figsize=(8, 11), sharex=True)
    axes[0].step(s["t"], s["weight"], where="post", color="black")
    axes[0].set_ylabel("candidate %")
    axes[0].set_ylim(-5, 105)
    colours = {"baseline": "tab:blue", "candidate": "tab:orange"}
    for a in ARMS:
        version = next(v["version"] for v in report["variants"] if v["arm"] == a)
        label = f"{a} (version {version})"
        axes[1].plot(s["t"], [100 * x for x in s[a]["err"]], ".-", color=colours[a], label=label)
        axes[2].plot(s["t"], s[a]["p99"], ".-", color=colours[a], label=label)
        axes[3].plot(s["t"], [100 * x for x in s[a]["acc"]], ".-", color=colours[a], label=label)
    axes[1].set_ylabel("errors %")
    axes[2].set_ylabel("p99 ms")
    axes[3].set_ylabel("accuracy %")
    axes[1].legend(loc="upper left", fontsize="small")
    axes[4].semilogy(s["t"], s["e"], color="tab:red", label="e-value (all checks)")
    axes[4].axhline(
        report["judge"]["threshold"], color="tab:red", linestyle="--", label="rollback at 1/alpha"
    )
    axes[4].set_ylabel("evidence")
    axes[4].set_xlabel("minutes since the start")
    axes[4].legend(loc="upper left", fontsize="small")
    title = textwrap.wrap(f"rollout of {report['model']}: {report['decision']}", 100)
    fig.suptitle("\n".join(title[:2]) + (" …" if len(title) > 2 else ""), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
