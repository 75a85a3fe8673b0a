"""ONNX Runtime sessions for one model version: providers (checked by ``core.providers``), session
options, the signature, warm-up, and a pool of instances that each run one batch at a time."""

from __future__ import annotations

import ctypes
import logging
import queue
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ortserve.core.providers import check_sessions, preload_gpu_libraries, resolve_providers
from ortserve.core.signature import Signature, TensorSpec
from ortserve.dtypes import DTYPES, ONNX_TYPES
from ortserve.repository.config import ModelConfig, RuntimeConfig, TensorConfig

__all__ = ["SessionPool"]

log = logging.getLogger("ortserve.runtime")

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


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


_BF16 = "tensor(bfloat16)"
_ONNX_BF16 = 16  # onnx.TensorProto.BFLOAT16


def _ort_value(array: np.ndarray) -> ort.OrtValue:
    if array.dtype == DTYPES.get("bfloat16"):
        # ONNX Runtime's numpy binding has no bfloat16: hand it the same bytes as uint16, typed.
        raw = np.ascontiguousarray(array).view(np.uint16)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, onnx_element_type=_ONNX_BF16)
    return ort.OrtValue.ortvalue_from_numpy(array)


def _from_ort_value(value: ort.OrtValue) -> np.ndarray:
    if value.data_type() != _BF16:
        return value.numpy()
    raw = (ctypes.c_char * value.tensor_size_in_bytes()).from_address(value.data_ptr())
    return np.frombuffer(bytes(raw), np.uint16).view(DTYPES["bfloat16"]).reshape(value.shape())


def _run_ort_values(
    session: ort.InferenceSession, names: list[str], feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """``session.run`` through OrtValues, for models with bfloat16 inputs or outputs."""
    values = session.run_with_ort_values(names, {n: _ort_value(a) for n, a in feeds.items()})
    return [_from_ort_value(v) for v in values]


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

    ``allow_cpu_fallback`` applies when the model's config.toml does not set its own: without it, a
    version that asks for a GPU provider its sessions do not get is refused (ProviderUnavailable)."""

    def __init__(
        self, path: Path, config: ModelConfig, default_max_elements: int, allow_cpu_fallback: bool = False
    ) -> None:
        rt = config.runtime
        self.path = path
        preload_gpu_libraries(rt.providers)
        providers = resolve_providers(rt.providers)
        so = _session_options(rt)
        self._sessions = [
            ort.InferenceSession(str(path), sess_options=so, providers=providers) for _ in range(rt.instances)
        ]
        allow = rt.allow_cpu_fallback if rt.allow_cpu_fallback is not None else allow_cpu_fallback
        # What the sessions really run on, which ONNX Runtime may have changed without an error.
        self.providers: list[str] = check_sessions(rt.providers, self._sessions, allow_cpu_fallback=allow)
        self._free: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for s in self._sessions:
            self._free.put(s)
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
        self.signature = Signature(
            inputs=_specs(inputs, config.inputs, max_batch > 0, "input"),
            outputs=_specs(outputs, config.outputs, max_batch > 0, "output"),
            max_batch_size=max_batch,
            max_input_elements=config.max_input_elements or default_max_elements,
        )
        self.output_names = [s.name for s in self.signature.outputs]
        self._bf16 = any(a.type == _BF16 for a in [*inputs, *outputs])

    @property
    def instances(self) -> int:
        return len(self._sessions)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        session = self._free.get()
        try:
            return self._run(session, feeds)
        finally:
            self._free.put(session)

    def _run(self, session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if self._bf16:
            return _run_ort_values(session, self.output_names, feeds)
        return session.run(self.output_names, dict(feeds))

    def warmup(self) -> None:
        """Run every instance once on a zero-filled request of batch size 1 (dynamic dims: 1)."""
        feeds = {}
        for spec in self.signature.inputs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            if spec.dtype == "string":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=DTYPES[spec.dtype])
        for session in self._sessions:
            try:
                self._run(session, feeds)
            except Exception as e:  # a model may reject zeros (e.g. indices); serving can still work
                log.warning("warm-up of %s failed, continuing without it: %s", self.path, e)
                return

    def close(self) -> None:
        self._sessions.clear()
