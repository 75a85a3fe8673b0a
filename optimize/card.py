"""The model card of a published variant (``MODEL_CARD.md``; the format is :mod:`ortserve.repository.modelcard`),
filled from what the run measured: why the version exists, what it was checked on, how it compares with its
parent, the gates it passed and what the figures do not say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ortserve.optimize.gates import Gates
from ortserve.optimize.results import VariantResult
from ortserve.repository import ModelCard

__all__ = ["model_card", "tensor_rows"]

_QUANTIZED = {"quantize-dynamic", "quantize-static"}
_PRUNED = {"prune-structured", "prune-magnitude"}
_DTYPES = {"float": "float32", "double": "float64"}  # ONNX's names that differ from ortserve's (numpy's)


def tensor_rows(path: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(inputs, outputs) of an ONNX file as (name, dtype, shape) rows; dynamic dimensions by name."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer}

    def row(v: Any) -> tuple[str, str, str]:
        t = v.type.tensor_type
        dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in t.shape.dim]
        name = onnx.TensorProto.DataType.Name(t.elem_type).lower()
        return v.name, _DTYPES.get(name, name), "[" + ", ".join(dims) + "]"

    return [row(v) for v in graph.input if v.name not in consts], [row(v) for v in graph.output]


def _steps(r: VariantResult) -> str:
    return " → ".join(s["step"] for s in r.steps) or "none (the FP32 model as it is)"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults"


def _f(x: Any, fmt: str = ".4g") -> str:
    return "n/a" if x is None else format(x, fmt)


def _results(r: VariantResult, baseline: dict[str, Any], gb: str) -> list[list[str]]:
    bv, bb, v, b = baseline["validation"], baseline["benchmark"], r.metrics, r.bench
    rows = [["", "parent (FP32 ONNX baseline)", "this version"]]
    rows.append(
        ["file size (MB)", _f(bb["size_bytes"] / 1e6, ".3f"), _f(b.get("size_bytes", 0) / 1e6, ".3f")]
    )
    for size in bb["batches"]:
        if size in b.get("batches", {}):
            for q in ("p50", "p99"):
                key = f"{q}_ms"
                rows.append(
                    [
                        f"{q} latency, batch {size} (ms)",
                        _f(bb["batches"][size][key]),
                        _f(b["batches"][size][key]),
                    ]
                )
    rows.append([f"speed-up at batch {gb}", "1.00x", f"{r.speedup.get(gb, 0):.2f}x"])
    for key, label in [
        ("cosine", "mean cosine vs the reference"),
        ("min_cosine", "lowest cosine of a row"),
        ("max_abs_err", "largest absolute difference"),
        ("top1_agreement", "top-1 agreement with the reference"),
        ("accuracy", "task accuracy"),
    ]:
        if key in v or key in bv:
            rows.append([label, _f(bv.get(key)), _f(v.get(key))])
    if "accuracy_drop" in v:
        rows.append(["accuracy drop (points)", "0", _f(v["accuracy_drop"], ".2f")])
    return rows


def _gates(gates: Gates, r: VariantResult, gb: str) -> list[tuple[str, str, str, str]]:
    v, out = r.metrics, []
    if gates.max_accuracy_drop is not None:
        drop = v.get("accuracy_drop")
        what = "accuracy drop (points)"
        if drop is None and "top1_agreement" in v:
            drop, what = (1.0 - v["top1_agreement"]) * 100, "top-1 disagreement (points; no labels)"
        measured = _f(drop, ".2f")
        ok = drop is None or drop <= gates.max_accuracy_drop
        out.append((what, f"<= {gates.max_accuracy_drop:g}", measured, "pass" if ok else "fail"))
    if gates.min_cosine is not None:
        ok = v.get("cosine", 0) >= gates.min_cosine
        out.append(("mean cosine", f">= {gates.min_cosine:g}", _f(v.get("cosine")), "pass" if ok else "fail"))
    if gates.min_speedup is not None:
        s = r.speedup.get(gb)
        ok = s is None or s >= gates.min_speedup
        out.append(
            (
                f"speed-up at batch {gb}",
                f">= {gates.min_speedup:g}x",
                f"{s or 0:.2f}x",
                "pass" if ok else "fail",
            )
        )
    return out


def _limitations(r: VariantResult, info: dict[str, Any], extra: list[str]) -> list[str]:
    steps = {s["step"] for s in r.steps}
    cpu = info.get("cpu", {})
    out = []
    if info.get("synthetic_data"):
        out.append(
            "Fidelity was measured on synthetic inputs generated from the signature (seeded random values), "
            "not on real data: it shows that this version computes what its parent computes on those inputs, "
            "not that it keeps the task's accuracy. Validate it on real data (`--data`) before a rollout."
        )
    if "accuracy" not in r.metrics:
        out.append("No labels were given: task accuracy was not measured, only agreement with the reference.")
    threads = r.bench.get("threads", "?")
    out.append(
        f"Latency was measured on {cpu.get('model', 'an unknown CPU')} ({cpu.get('cores', '?')} cores, "
        f"{threads} intra-op threads, ONNX Runtime {info.get('libraries', {}).get('onnxruntime', '?')}); "
        "other hardware gives other figures, and INT8 gains depend on the CPU's instructions (VNNI, AMX)."
    )
    if steps & _QUANTIZED:
        out.append(
            "Quantized to INT8: outputs differ slightly from the parent's (the largest difference is in the "
            "table); inputs far outside the data it was checked"
            + (" and calibrated" if "quantize-static" in steps else "")
            + " on may differ more."
        )
    if steps & _PRUNED:
        out.append("Pruned: weights or channels were removed; check it on data the task cares about.")
    if "finetune" in steps and not info.get("train_data"):
        out.append("Fine-tuned without training labels, by distillation towards the unpruned model.")
    return out + list(extra)


def model_card(
    r: VariantResult,
    info: dict[str, Any],
    baseline: dict[str, Any],
    gates: Gates,
    *,
    model: str,
    parent: str | None,
    intended_use: str | None = None,
    limitations: list[str] | None = None,
) -> ModelCard:
    """The card of an accepted variant, before it is published (``r.path`` is its ONNX file)."""
    gb = str(info["speedup_batch"])
    origin = f"version {parent} of {model}" if parent else info["source"]
    summary = (
        f"Variant **{r.name}** of {origin}, made by ortserve-optimize on {info['created']} with the steps "
        f"{_steps(r)}. It was validated against the {info['reference']} and benchmarked against the FP32 ONNX "
        f"baseline ({r.speedup.get(gb, 0):.2f}x at batch {gb}). Publishing does not make it serve: it serves when "
        "a request names its version, a flag routes to it, or it becomes the model's default_version."
    )
    use = intended_use or (
        f"The task of its parent ({origin}), with the same inputs and outputs: a drop-in replacement meant to "
        "serve it faster or smaller. Roll it out behind a canary flag (the report folder's canary-flags.json "
        "proposes one) and watch its metrics against the parent's."
    )
    inputs, outputs = tensor_rows(r.path) if r.path else ([], [])
    lineage = [
        ("source", info["source"]),
        ("parent version", parent or "none (the source is not a repository version)"),
        ("steps", "; ".join(f"`{s['step']}` ({_params(s['params'])})" for s in r.steps) or "none"),
        ("seed", str(info["seed"])),
        ("created", info["created"]),
        ("libraries", ", ".join(f"{k} {v}" for k, v in sorted(info.get("libraries", {}).items()))),
    ]
    evaluation = info["eval_data"]
    if "rows" not in evaluation:
        evaluation += f" ({info.get('eval_rows', '?')} rows)"
    data = [("evaluation", evaluation)]
    used = {s["step"] for s in r.steps}
    if "quantize-static" in used:
        data.append(("calibration", info.get("calibration_data") or info["eval_data"]))
    if "finetune" in used:
        data.append(
            ("fine-tuning", info.get("train_data") or "the calibration inputs (distillation, no labels)")
        )
    return ModelCard(
        model=model,
        title=r.name,
        summary=summary,
        intended_use=use,
        inputs=inputs,
        outputs=outputs,
        lineage=lineage,
        data=data,
        results=_results(r, baseline, gb),
        gates=_gates(gates, r, gb),
        limitations=_limitations(r, info, limitations or []),
    )
