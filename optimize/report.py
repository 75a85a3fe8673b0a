"""report.md (the table a person reads to pick a variant), report.json (everything), plot.png (latency vs
accuracy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ortserve.optimize.results import RunResult
from ortserve.repository import write_atomic

__all__ = ["write_report"]


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _ms(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _fidelity(m: dict[str, Any]) -> str:
    if "error" in m:
        return "n/a"
    if "accuracy_drop" in m:
        return f"{m['accuracy_drop']:+.2f} pt"
    if "top1_agreement" in m:
        return f"{(1 - m['top1_agreement']) * 100:.2f}% top-1 flips"
    return "n/a"


def _recommend(best: Any, gb: str) -> str:
    if best is None:
        return "Recommendation: no variant passed the gates; keep the current version."
    where = f" (version {best.version})" if best.version else ""
    speed = best.speedup.get(gb, 0)
    if speed < 1.0:
        return (
            f"Recommendation: no accepted variant is faster than the baseline at batch {gb} on this CPU "
            f"(best: {best.name}{where}, {speed:.2f}x); keep the current version unless size matters."
        )
    return (
        f"Recommendation: roll out **{best.name}**{where}, {speed:.2f}x faster at batch {gb}, "
        "behind a canary flag."
    )


def _markdown(result: RunResult) -> str:
    info = result.info
    batches = list(result.baseline["benchmark"]["batches"])
    gb = str(info["speedup_batch"])
    head = (
        ["variant", "size"]
        + [f"p50 b{b} (ms)" for b in batches]
        + [f"speed-up b{gb}", "cosine", "accuracy drop", "result"]
    )
    rows = [head, ["---"] * len(head)]
    base = result.baseline
    rows.append(
        [f"{'FP32 reference'} (baseline)", _mb(base["benchmark"]["size_bytes"])]
        + [_ms(base["benchmark"]["batches"][b]["p50_ms"]) for b in batches]
        + ["1.00x", f"{base['validation'].get('cosine', 1):.5f}", _fidelity(base["validation"]), "reference"]
    )
    for v in result.variants:
        verdict = (
            (f"accepted, version {v.version}" if v.version else "accepted")
            if v.accepted
            else ("rejected: " + "; ".join(v.reasons))
        )
        rows.append(
            [v.name, _mb(v.bench.get("size_bytes", 0))]
            + [_ms(v.bench["batches"][b]["p50_ms"]) for b in batches]
            + [
                f"{v.speedup.get(gb, 0):.2f}x",
                f"{v.metrics.get('cosine', float('nan')):.5f}",
                _fidelity(v.metrics),
                verdict,
            ]
        )
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    best = max((v for v in result.variants if v.accepted), key=lambda v: v.speedup.get(gb, 0), default=None)
    cpu = info["cpu"]
    lines = [
        "# optimize report",
        "",
        f"Source: {info['source']}. Reference: {info['reference']}. Created {info['created']}.",
        f"Evaluation data: {info['eval_data']}"
        + (
            " — **fidelity was measured on synthetic inputs**, not real data."
            if info["synthetic_data"]
            else "."
        ),
        (
            f"CPU: {cpu['model']} ({cpu['cores']} cores; {', '.join(cpu['features']) or 'no SIMD features found'}); "
            f"{result.baseline['benchmark']['threads']} intra-op threads."
        ),
        "",
        table,
        "",
        _recommend(best, gb),
        "",
        "Gates: " + (", ".join(f"{k} = {v:g}" for k, v in info["gates"].items() if v is not None) or "none"),
        "",
        "Latency: p50 over interleaved runs; p90/p99 and throughput are in report.json."
        + _cosine_note(result),
    ]
    return "\n".join(lines) + "\n"


def _cosine_note(result: RunResult) -> str:
    over = {v.metrics.get("cosine_over") for v in result.variants} | {
        result.baseline["validation"].get("cosine_over")
    }
    if "real tokens (attention_mask)" in over:
        return " Cosine: per token state, real tokens only (padding positions left out), averaged per row."
    return ""


def _plot(result: RunResult, path: Path) -> bool:
    """Latency at the speed-up batch size against accuracy (with labels) or mean cosine (without)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    gb = str(result.info["speedup_batch"])
    base = result.baseline
    use_acc = "accuracy" in base["validation"]
    key, label = ("accuracy", "task accuracy") if use_acc else ("cosine", "mean cosine vs reference")

    def y(metrics: dict[str, Any]) -> float:
        return float(metrics.get(key, 0.0)) * (100 if use_acc else 1)

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.scatter(
        [base["benchmark"]["batches"][gb]["p50_ms"]],
        [y(base["validation"])],
        color="black",
        marker="x",
        s=50,
        label="baseline (FP32)",
    )
    for i, v in enumerate(r for r in result.variants if r.bench):
        lat, val = v.bench["batches"][gb]["p50_ms"], y(v.metrics)
        ax.scatter([lat], [val], color="tab:green" if v.accepted else "tab:red", s=40)
        ax.annotate(
            v.name, (lat, val), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize=8
        )
    ax.set_xlim(left=0)
    ax.set_xlabel(f"p50 latency at batch {gb} (ms)")
    ax.set_ylabel(label + (" (%)" if use_acc else ""))
    ax.set_title("optimize: latency vs fidelity (green: accepted, red: rejected)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def write_report(result: RunResult, out_dir: Path, models: dict[str, Path] | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "info": result.info,
        "baseline": result.baseline,
        "variants": [v.to_dict() for v in result.variants],
        "accepted": [v.name for v in result.variants if v.accepted],
    }
    write_atomic(out_dir / "report.json", json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    (out_dir / "report.md").write_text(_markdown(result))
    _plot(result, out_dir / "plot.png")
