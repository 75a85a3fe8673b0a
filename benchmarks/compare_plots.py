"""The PNG plots of ``python -m benchmarks.bench_compare``: latency against throughput (one curve
per server/configuration, raw ONNX Runtime's best batch as the limit) and the overload timeline."""

from __future__ import annotations

from pathlib import Path

from benchmarks.compare_report import raw_best

__all__ = ["plots"]


def plots(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for model in ("digits", "cnn"):
        series = [s for s in results["series"] if s["model"] == model and s["points"]]
        if not series:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharex=True)
        for ax, key, name in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
            for s in series:
                xs = [p["throughput_rps"] for p in s["points"]]
                ys = [max(p[key], 1e-3) for p in s["points"]]
                ax.plot(xs, ys, marker="o", label=s["label"])
                for p, x, y in zip(s["points"], xs, ys):
                    ax.annotate(
                        str(p["concurrency"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7
                    )
            best, rate = raw_best(results, model)
            fastest = max(p["throughput_rps"] for s in series for p in s["points"])
            if rate <= 3 * fastest:
                ax.axvline(rate, color="grey", linestyle="--", label=f"raw ONNX Runtime, batch {best}")
            else:  # an overhead-bound model: the limit would squash every curve against the axis
                ax.plot(
                    [], [], " ", label=f"raw ONNX Runtime, batch {best}: {rate:,.0f} rows/s (off the scale)"
                )
            ax.set_yscale("log")
            ax.set_xlabel("throughput (requests/s); point labels: closed-loop concurrency")
            ax.set_ylabel(f"{name} latency (ms)")
            ax.set_title(f"{model}: {name} latency against throughput")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        path = folder / f"latency_throughput_{model}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    o = results.get("overload")
    if o and o.get("timeline"):
        tl = o["timeline"]
        width = tl[1]["t"] - tl[0]["t"] if len(tl) > 1 else 0.1
        t = [b["t"] for b in tl]
        fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
        axes[0].plot(t, [b["ok"] / width for b in tl], label="admitted (OK)")
        axes[0].plot(
            t, [b["shed"] / width for b in tl], label="shed (RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED)"
        )
        axes[0].plot(t, [b["other"] / width for b in tl], label="other errors")
        axes[0].set_ylabel("requests/s")
        axes[0].legend(fontsize=7)
        axes[1].plot(t, [b["p99_ms"] for b in tl], color="tab:red", label="p99 of admitted")
        axes[1].axhline(
            o["bound_ms"], color="grey", linestyle="--", label="bound: 2 x (queue limit + compute)"
        )
        axes[1].set_ylabel("ms")
        axes[1].legend(fontsize=7)
        rss = o["rss_samples"]
        axes[2].plot([s[0] for s in rss], [s[1] for s in rss], color="tab:green")
        axes[2].set_ylabel("server RSS (MiB)")
        axes[2].set_xlabel("seconds (load from warm-up start to the end of the load window)")
        stop = o["warmup_s"] + o["duration_s"]
        for ax in axes:
            ax.axvline(stop, color="black", linestyle=":", linewidth=1)
            ax.grid(True, alpha=0.3)
        axes[0].set_title(
            f"{o['model']}: open loop at {o['factor']:.0f}x capacity ({o['offered_rps']:,.0f} req/s)"
        )
        fig.tight_layout()
        path = folder / f"overload_{o['model']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
