"""The RESULTS.md section of ``python -m benchmarks.bench_compare``: targets met or missed, what
limits a missed one, a table per model, the overload, the profiles (its plots: ``compare_plots``).

Input: the JSON-able ``results`` dict the script builds (series of load points, raw ONNX Runtime
rows/s, overload, profiles)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import CHANNELS, INPUT

__all__ = ["HEAD", "markdown", "raw_best"]

HEAD = "## load comparison: ortserve vs raw ONNX Runtime and MLServer"
TITLES = {
    "digits": "digits (demo MLP, one-row requests: overhead-bound)",
    "cnn": f"small CNN {'/'.join(map(str, CHANNELS))} channels on {'x'.join(map(str, INPUT))} "
    "(one-row requests: compute-bound)",
}


def _point(results: dict, label_prefix: str, model: str, concurrency: int) -> dict | None:
    for s in results["series"]:
        if s["label"].startswith(label_prefix) and s["model"] == model:
            for p in s["points"]:
                if p["concurrency"] == concurrency:
                    return p
    return None


def _by_batch(rows_per_s: dict) -> dict[int, float]:
    """Batch size -> rows/s, whether the keys are ints or (read back from compare.json) strings."""
    return {int(k): v for k, v in rows_per_s.items()}


def raw_best(results: dict, model: str) -> tuple[int, float]:
    raw = _by_batch(results["raw"][model])
    best = max(raw, key=lambda b: raw[b])
    return best, raw[best]


def _targets(results: dict) -> list[tuple[str, str, str]]:
    rows = []
    # 1. digits at concurrency 32: ortserve vs MLServer.
    peer = _point(results, "MLServer", "digits", 32)
    for prefix in ("ortserve v1, batching on", "ortserve V2, batching on"):
        ours = _point(results, prefix, "digits", 32)
        what = f"digits, c=32: {prefix} >= 3x MLServer's throughput, lower p99"
        if ours is None or peer is None:
            rows.append(
                (
                    what,
                    "not measured in this run ("
                    + ("MLServer skipped" if peer is None and ours else "no c=32 point")
                    + ")",
                    "-",
                )
            )
            continue
        ratio = ours["throughput_rps"] / max(peer["throughput_rps"], 1e-9)
        ok = ratio >= 3 and ours["p99_ms"] < peer["p99_ms"]
        rows.append(
            (
                what,
                (
                    f"{ratio:.2f}x ({ours['throughput_rps']:,.0f} vs {peer['throughput_rps']:,.0f} req/s); "
                    f"p99 {ours['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms"
                ),
                "met" if ok else "**missed**",
            )
        )
    # 2. cnn at concurrency 32 vs raw ONNX Runtime's best batch.
    ours = _point(results, "ortserve v1, batching on", "cnn", 32)
    best, rate = raw_best(results, "cnn")
    what = "small CNN, c=32: ortserve one-row requests >= 0.9x raw ONNX Runtime's best batched throughput"
    if ours is None:
        rows.append((what, "not measured in this run (no c=32 point)", "-"))
    else:
        ratio = ours["throughput_rps"] / rate
        batch = f", mean batch {ours['mean_batch']:.1f}" if ours.get("mean_batch") else ""
        rows.append(
            (
                what,
                (
                    f"{ratio:.2f}x ({ours['throughput_rps']:,.0f} vs {rate:,.0f} rows/s at batch {best}"
                    f"{batch})"
                ),
                "met" if ratio >= 0.9 else "**missed**",
            )
        )
    # 3. overload.
    o = results.get("overload")
    if o:
        sheds = sum(o["shed"].values()) > 0
        flat = o["rss_growth_mb"] <= max(16.0, 0.05 * o["rss_before_mb"])
        # Judged from the actual send: on a shared machine the generator itself can start requests
        # late, and that lateness (shown too) is not the server's.
        admitted = o["result"]["requests"] > 0
        bounded = admitted and o["result"]["p99_from_send_ms"] <= o["bound_ms"]
        recovered = o["recovered_s"] is not None and o["recovered_s"] <= 1.0
        rows.append(
            (
                f"overload {o['factor']:.0f}x capacity: sheds with RESOURCE_EXHAUSTED/DEADLINE_EXCEEDED",
                f"{o['shed_fraction']:.0%} of {o['result']['sent']:,} shed ({_codes(o['shed'])})",
                "met" if sheds else "**missed**",
            )
        )
        rows.append(
            (
                "overload: server memory (RSS) flat",
                (
                    f"{o['rss_growth_mb']:+.1f} MiB from the 2nd to the last quarter of the load "
                    f"(RSS {o['rss_before_mb']:.0f} MiB before, peak {o['rss_peak_mb']:.0f} MiB)"
                ),
                "met" if flat else "**missed**",
            )
        )
        rows.append(
            (
                "overload: p99 of admitted requests <= 2x (max queue delay + compute)",
                (
                    f"{o['result']['p99_from_send_ms']:.1f} ms from the actual send "
                    f"({o['admitted_p99_ms']:.1f} ms from the scheduled start) vs bound "
                    f"{o['bound_ms']:.1f} ms = 2 x ({o['queue_timeout_ms']:.0f} ms queue limit + "
                    f"{o['mean_compute_ms']:.1f} ms batch compute)"
                    if admitted
                    else "no request was admitted"
                ),
                "met" if bounded else "**missed**",
            )
        )
        rows.append(
            (
                "overload (no target, for reading the above): admitted throughput against capacity",
                (f"{o['goodput_fraction']:.0%} ({o['result']['throughput_rps']:,.0f} of {_capacity(o)})"),
                "-",
            )
        )
        rec = (
            "did not recover within 5 s" if o["recovered_s"] is None else f"{o['recovered_s'] * 1000:.0f} ms"
        )
        rows.append(
            (
                "overload: recovers within 1 s after the load stops",
                f"{rec} (first probe answered within {o['recovery_threshold_ms']:.1f} ms)",
                "met" if recovered else "**missed**",
            )
        )
    return rows


def _capacity(o: dict) -> str:
    """The capacity the overload was a multiple of, and whether it was measured or the floor."""
    if not o.get("capacity_floored"):
        return f"{o['capacity_rps']:,.0f} req/s"
    return (
        f"{o['capacity_rps']:,.1f} req/s, the floor used because {o['capacity_measured_rps']:,.1f} "
        f"req/s was measured in {o['capacity_s']:g} s"
    )


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


def _limits(results: dict) -> list[str]:
    """What the data says about a missed target (a profile says more: see the notes)."""
    notes = []
    ours = _point(results, "ortserve v1, batching on", "cnn", 32)
    if ours is not None:
        best, rate = raw_best(results, "cnn")
        raw = _by_batch(results["raw"]["cnn"])
        if ours["throughput_rps"] < 0.9 * rate and ours.get("mean_batch"):
            near = min(raw, key=lambda b: abs(b - ours["mean_batch"]))
            notes.append(
                f"small CNN at c=32: the server ran batches of {ours['mean_batch']:.1f} rows on average "
                f"(c=32 caps them at 32); raw ONNX Runtime at batch {near} gives {raw[near]:,.0f} rows/s "
                f"against {rate:,.0f} at batch {best}, and the load generator shares the 2 cores."
            )
    return notes


def _table(results: dict, model: str) -> list[str]:
    lines = [
        (
            "| configuration | concurrency | throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) "
            "| mean batch | errors |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["series"]:
        if s["model"] != model:
            continue
        for p in s["points"]:
            batch = f"{p['mean_batch']:.1f}" if p.get("mean_batch") else "-"
            lines.append(
                f"| {s['label']} | {p['concurrency']} | {p['throughput_rps']:,.0f} | {p['p50_ms']:.2f} | "
                f"{p['p90_ms']:.2f} | {p['p99_ms']:.2f} | {batch} | {_codes(p['errors'])} |"
            )
    return lines


def markdown(results: dict, images: list[Path], relative_to: Path) -> str:
    prof = results["profile"]
    versions = results.get("versions", {})
    peer = results.get("mlserver_versions") or {}
    lines = [
        HEAD,
        "",
        (
            f"Machine: {results['machine']}. Command: `{results.get('command', '')}` "
            f"({results.get('wall_s', 0):.0f} s in all)."
        ),
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}"
        + (
            f"; MLServer {peer.get('mlserver')} (its own venv: onnxruntime {peer.get('onnxruntime')}, grpcio "
            f"{peer.get('grpcio')})"
            if peer
            else ""
        )
        + ".",
        "",
        (
            f"Closed loop, one-row requests, {prof['duration']:g} s per point after {prof['warmup']:g} s "
            "warm-up; the load generator (benchmarks/loadgen/) runs on the same machine as the servers "
            "and takes its share of the CPU, so the figures are ratios from one run. Every server gets the "
            "same ONNX Runtime thread budget (digits: 2 sessions x 1 thread in ortserve, 2 threads in "
            "MLServer's worker; CNN: 2 threads). ortserve v1 is ortserve.v1 Predict; V2 is KServe V2 "
            "ModelInfer with raw contents, the protocol MLServer is driven over. Batch sizes are the "
            "server's own (from /metrics)."
        ),
        "",
    ]
    lines += ["### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _targets(results)]
    limits = _limits(results)
    if limits:
        lines += ["", *(f"- {n}" for n in limits)]
    for model in ("digits", "cnn"):
        lines += ["", f"### {TITLES[model]}", ""]
        for img in images:
            if img.name == f"latency_throughput_{model}.png":
                lines += [f"![latency against throughput, {model}]({_rel(img, relative_to)})", ""]
        lines += _table(results, model)
        raw = results["raw"][model]
        best, _ = raw_best(results, model)
        threads = "1 intra-op thread, one session" if model == "digits" else "2 intra-op threads"
        runs = results.get("raw_runs") or [results["raw"]]
        spread = ""
        if len(runs) > 1:
            passes = [_by_batch(r[model])[best] for r in runs]
            spread = (
                f" (the better of {len(runs)} passes, before and after the servers: "
                + " and ".join(f"{v:,.0f}" for v in passes)
                + f" at batch {best})"
            )
        lines += [
            "",
            f"Raw ONNX Runtime in-process, {threads} (rows/s): "
            + ", ".join(f"batch {b}: {v:,.0f}" for b, v in raw.items())
            + f"; best: batch {best}{spread}.",
        ]
    o = results.get("overload")
    if o:
        r = o["result"]
        lines += ["", f"### Overload: open loop at {o['factor']:.0f}x capacity ({o['model']})", ""]
        for img in images:
            if img.name.startswith("overload_"):
                lines += [f"![overload timeline]({_rel(img, relative_to)})", ""]
        lines += [
            (
                f"Requests of {o['rows']} rows (so that the model, not the gRPC layer or the load "
                f"generator, is the limit). Capacity: {_capacity(o)} (ortserve V2, batching "
                f"on, closed loop at concurrency {o['capacity_concurrency']}, p99 "
                f"{o['capacity_p99_ms']:.1f} ms). Poisson arrivals at {o['offered_rps']:,.0f} req/s for "
                f"{o['duration_s']:g} s after {o['warmup_s']:g} s warm-up (sent {o['sent_rps']:,.0f} req/s; "
                f"the generator was at most {r['max_lag_ms']:.0f} ms late), V2 ModelInfer with Triton's "
                f"`timeout` parameter = {o['queue_timeout_ms']:.0f} ms (the longest a request may wait in "
                "the queue)."
                + (
                    " The capacity measured was too little to derive a load from (a busy machine): the "
                    "floor keeps the offered rate above zero and a few requests in the window, and the "
                    "figures below say little about overload."
                    if o.get("capacity_floored")
                    else ""
                )
            ),
            "",
            (
                "| admitted (req/s) | shed | other errors | admitted p50 / p99 / max (ms) [p99 from send] "
                "| bound (ms) | server: mean batch, queue, time in server (ms) "
                "| RSS before / peak / growth (MiB) | recovery |"
            ),
            "|---|---|---|---|---|---|---|---|",
            f"| {r['throughput_rps']:,.0f} | {_codes(o['shed'])} | {_codes(o['other_errors'])} | "
            f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} [{r['p99_from_send_ms']:.1f}] | "
            f"{o['bound_ms']:.1f} | "
            f"{o['mean_batch']:.1f} rows, {o['server_queue_ms']:.1f}, {o['server_time_ms']:.1f} | "
            f"{o['rss_before_mb']:.0f} / {o['rss_peak_mb']:.0f} / {o['rss_growth_mb']:+.1f} | "
            + ("none within 5 s" if o["recovered_s"] is None else f"{o['recovered_s'] * 1000:.0f} ms")
            + " |",
        ]
    profiles = results.get("profiles") or []
    if profiles:
        lines += [
            "",
            "### Where the server's time goes (py-spy)",
            "",
            (
                "Own time of the functions that held the GIL most, sampled in the server process while "
                "the load generator ran ortserve v1 one-row requests (batching on) at the given "
                "concurrency. ONNX Runtime releases the GIL, so its compute shows only as the Python around "
                "it: a server whose top frames are gRPC, asyncio and protobuf is overhead-bound. "
                "`Runner.run` is the event loop's own native code (uvloop, and gRPC's Cython completion "
                "queue under it): transport work, not the server's Python."
            ),
        ]
        for prof in profiles:
            if "error" in prof:
                lines += ["", f"- {prof['error']}"]
                continue
            lines += [
                "",
                (
                    f"{prof['model']}, c={prof['concurrency']}, {prof['seconds']} s, "
                    f"{prof['samples']:,} samples ({prof['throughput_rps']:,.0f} req/s while sampled):"
                ),
                "",
                "| function | share |",
                "|---|---|",
            ]
            lines += [f"| `{frame}` | {share:.1%} |" for frame, share in prof["top"]]
    if results.get("skipped"):
        lines += ["", "### Not measured in this run", "", *(f"- {s}" for s in results["skipped"])]
    return "\n".join(lines) + "\n"


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
