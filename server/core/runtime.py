"""ONNX Runtime sessions for one model version: providers and their options (``core.providers``),
session options, the signature, warm-up, and a pool of instances that each run one batch at a time,
with ``session.run`` or through IO binding (``core.binding``)."""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from ortserve.core.binding import BF16, BoundRunner, Device, from_ort_value, ort_value
from ortserve.core.providers import (
    CUDA,
    TENSORRT,
    check_sessions,
    preload_gpu_libraries,
    provider_options,
    resolve_providers,
    trt_cache_dir,
)
from ortserve.core.signature import Signature, TensorSpec
from ortserve.dtypes import DTYPES, ONNX_TYPES
from ortserve.repository.config import ModelConfig, RuntimeConfig, TensorConfig

__all__ = ["SessionDefaults", "SessionPool"]

log = logging.getLogger("ortserve.runtime")

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_TRUE = ("1", "true", "True")


@dataclass(frozen=True)
class SessionDefaults:
    """What the server's settings give every version's sessions (a model's config.toml may override):
    CPU fallback, and where TensorRT caches when a version folder cannot hold its cache."""

    allow_cpu_fallback: bool = False
    cache_dir: Path | None = None


def _session_options(rt: RuntimeConfig) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = rt.intra_op_threads
    so.inter_op_num_threads = rt.inter_op_threads
    so.graph_optimization_level = _LEVELS[rt.graph_optimization_level]
    so.log_severity_level = 3
    if not rt.allow_spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


class _Runner(Protocol):
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class _Plain:
    """``session.run``; through OrtValues for models with bfloat16 inputs or outputs."""

    def __init__(self, session: ort.InferenceSession, names: list[str], bf16: bool) -> None:
        self._session, self._names, self._bf16 = session, names, bf16

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if not self._bf16:
            return self._session.run(self._names, dict(feeds))
        values = self._session.run_with_ort_values(self._names, {n: ort_value(a) for n, a in feeds.items()})
        return [from_ort_value(v) for v in values]


def _dims(shape: list) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def _specs(
    args: list, overrides: tuple[TensorConfig, ...] | None, batched: bool, kind: str
) -> tuple[TensorSpec, ...]:
    specs = {}
    for a in args:
        dtype = ONNX_TYPES.get(a.type)
        if dtype is None:
            raise ValueError(f"{kind} '{a.name}' has type {a.type}, which ortserve cannot serve")
        shape = _dims(a.shape)
        if batched:
            shape = (-1, *shape[1:])
        specs[a.name] = TensorSpec(a.name, dtype, shape)
    if overrides is None:
        return tuple(specs.values())
    out = []
    for o in overrides:
        base = specs.get(o.name)
        if base is None:
            raise ValueError(f"config.toml names {kind} '{o.name}', the model has: {', '.join(specs)}")
        dtype = o.dtype or base.dtype
        if dtype != base.dtype or dtype not in DTYPES:
            raise ValueError(f"config.toml gives {kind} '{o.name}' dtype {dtype}, the model has {base.dtype}")
        shape = base.shape
        if o.shape is not None:
            shape = ((-1,) if batched else ()) + tuple(o.shape)
            if len(shape) != len(base.shape):
                raise ValueError(
                    f"config.toml gives {kind} '{o.name}' shape {list(shape)}, the model has rank {len(base.shape)}"
                )
        out.append(TensorSpec(o.name, dtype, shape))
    return tuple(out)


class SessionPool:
    """``instances`` InferenceSessions of one model file. ``run`` is called from worker threads;
    the caller (the batcher) never has more runs in flight than there are instances.

    ``defaults.allow_cpu_fallback`` applies when the model's config.toml does not set its own: without
    it, a version that asks for a GPU provider its sessions do not get is refused (ProviderUnavailable)."""

    def __init__(
        self,
        path: Path,
        config: ModelConfig,
        default_max_elements: int,
        defaults: SessionDefaults = SessionDefaults(),
    ) -> None:
        rt = config.runtime
        self.path = path
        self._threads = rt.intra_op_threads
        preload_gpu_libraries(rt.providers)
        options = provider_options(rt, lambda: trt_cache_dir(Path(path).parent, defaults.cache_dir))
        providers = resolve_providers(rt.providers, options)
        # What the sessions were given, by provider (ONNX Runtime reports only some of it back).
        self.provider_options: dict[str, dict[str, str]] = dict(providers)
        so = _session_options(rt)
        try:
            self._sessions = [
                ort.InferenceSession(str(path), sess_options=so, providers=providers)
                for _ in range(rt.instances)
            ]
        except Exception as e:
            if self._option(CUDA, "enable_cuda_graph") in _TRUE and "graph" in str(e).lower():
                raise ValueError(
                    f"{e} (CUDA graphs need every node on the CUDA provider: set [runtime.provider_options."
                    f"{CUDA}] enable_cuda_graph = false to pad batches without them)"
                ) from e
            raise
        allow = rt.allow_cpu_fallback if rt.allow_cpu_fallback is not None else defaults.allow_cpu_fallback
        # What the sessions really run on, which ONNX Runtime may have changed without an error.
        self.providers: list[str] = check_sessions(rt.providers, self._sessions, allow_cpu_fallback=allow)
        inputs, outputs = self._sessions[0].get_inputs(), self._sessions[0].get_outputs()
        # Batchable when every input and output has a dynamic first dimension.
        dynamic_first = all(
            len(a.shape) > 0 and not (isinstance(a.shape[0], int) and a.shape[0] >= 0)
            for a in [*inputs, *outputs]
        )
        max_batch = (
            config.max_batch_size if config.max_batch_size is not None else (64 if dynamic_first else 0)
        )
        if max_batch > 0 and not dynamic_first:
            raise ValueError(
                f"max_batch_size is {max_batch} but not every input and output has a dynamic first dimension"
            )
        sizes = rt.cuda_graph_batch_sizes
        if sizes and sizes[-1] > max_batch:
            raise ValueError(
                f"[runtime] cuda_graph_batch_sizes: expected sizes <= max_batch_size ({max_batch}"
                f"{', the model has no batch dimension' if max_batch == 0 else ''}), got {sizes[-1]}"
            )
        self.signature = Signature(
            inputs=_specs(inputs, config.inputs, max_batch > 0, "input"),
            outputs=_specs(outputs, config.outputs, max_batch > 0, "output"),
            max_batch_size=max_batch,
            max_input_elements=config.max_input_elements or default_max_elements,
        )
        self.output_names = [s.name for s in self.signature.outputs]
        bf16 = any(a.type == BF16 for a in [*inputs, *outputs])
        self._runners: list[_Runner] = [
            BoundRunner(s, self.output_names, *self._binding(s, sizes)) if rt.io_binding
            else _Plain(s, self.output_names, bf16)
            for s in self._sessions
        ]  # fmt: skip
        first = self._runners[0]
        if isinstance(first, BoundRunner):
            where, graphs = f"{first.device.kind}:{first.device.id}", first.graphs
            log.info("%s: IO binding on %s, batches padded to %s, CUDA graphs %s", path, where,
                     list(sizes) or "no size", "on" if graphs else "off",
                     extra={"event": "io_binding", "device": where, "padded_sizes": list(sizes), "cuda_graphs": graphs})  # fmt: skip
        self._free: queue.SimpleQueue[_Runner] = queue.SimpleQueue()
        for r in self._runners:
            self._free.put(r)
        self._warm_sizes = sizes if all(d >= 0 for s in self.signature.inputs for d in s.shape[1:]) else ()

    def _option(self, provider: str, key: str) -> str | None:
        return self.provider_options.get(provider, {}).get(key)

    def _binding(
        self, session: ort.InferenceSession, sizes: Sequence[int]
    ) -> tuple[Device, tuple[int, ...], bool]:
        """Where a session's bound buffers live, its padded sizes, and whether it captures CUDA graphs."""
        used = session.get_providers()
        for name in (TENSORRT, CUDA):
            if name in used:
                device = Device("cuda", int(self._option(name, "device_id") or 0))
                graphs = CUDA in used and self._option(CUDA, "enable_cuda_graph") in _TRUE
                return device, tuple(sizes), bool(sizes) and graphs
        return Device(), tuple(sizes), False

    @property
    def instances(self) -> int:
        return len(self._sessions)

    @property
    def cpu_threads(self) -> int | None:
        """The threads one run's CPU work spreads over (its intra-op threads; ONNX Runtime's default,
        0, is one per core), None when a provider other than the CPU's runs the sessions: then a
        run's time is not the calling thread's CPU time (``ortserve.core.batching``)."""
        if self.providers != ["CPUExecutionProvider"]:
            return None
        return self._threads or os.cpu_count() or 1

    @property
    def padded_shapes(self) -> list[int]:
        """Per instance, the padded shapes that have their own bound buffers (and CUDA graph)."""
        return [r.shapes if isinstance(r, BoundRunner) else 0 for r in self._runners]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        runner = self._free.get()
        try:
            return runner.run(feeds)
        finally:
            self._free.put(runner)

    def _zeros(self, rows: int) -> dict[str, np.ndarray]:
        """A zero-filled request of ``rows`` rows (other dynamic dims: 1)."""
        feeds = {}
        for spec in self.signature.inputs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            if self.signature.max_batch_size > 0:
                shape = (rows, *shape[1:])
            if spec.dtype == "string":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=DTYPES[spec.dtype])
        return feeds

    def warmup(self) -> None:
        """Run every instance once on a zero-filled request of batch size 1, and, when the inputs'
        other dims are fixed, twice at each padded size (a CUDA graph is captured on the second run),
        so that requests do not pay for the buffers and graphs."""
        runs = [(1, 1)] + [(size, 2) for size in self._warm_sizes]
        for runner in self._runners:
            try:
                for rows, times in runs:
                    for _ in range(times):
                        runner.run(self._zeros(rows))
            except Exception as e:  # a model may reject zeros (e.g. indices); serving can still work
                log.warning("warm-up of %s failed, continuing without it: %s", self.path, e)
                return

    def close(self) -> None:
        self._sessions.clear()
        self._runners.clear()
