"""Triton's extensions to the Open Inference Protocol that describe a model version: its model
configuration (``model_config.proto``) and its statistics, built from what the version actually
serves with."""

from __future__ import annotations

from ortserve._proto.inference import grpc_service_pb2 as pb
from ortserve._proto.inference import model_config_pb2 as mc
from ortserve.core import ModelVersion
from ortserve.dtypes import V2_NAMES
from ortserve.repository.config import MODEL_FILE, VersionPolicy

__all__ = ["PLATFORM", "model_config", "model_statistics"]

PLATFORM = "onnxruntime_onnx"
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")
# Our dtype names -> model_config.proto's DataType (whose name for BYTES is TYPE_STRING).
_DATA_TYPES = {
    ours: mc.DataType.Value("TYPE_" + ("STRING" if v2 == "BYTES" else v2)) for ours, v2 in V2_NAMES.items()
}


def _tensors(specs, batched: bool, cls):
    return [
        cls(name=s.name, data_type=_DATA_TYPES[s.dtype], dims=list(s.shape[1:] if batched else s.shape))
        for s in specs
    ]


def _version_policy(policy: VersionPolicy) -> mc.ModelVersionPolicy:
    if policy.kind == "latest":
        return mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=policy.latest))
    if policy.kind == "specific":
        return mc.ModelVersionPolicy(
            specific=mc.ModelVersionPolicy.Specific(versions=[int(v) for v in policy.versions])
        )
    return mc.ModelVersionPolicy(all=mc.ModelVersionPolicy.All())


def model_config(mv: ModelVersion, default_version: str) -> mc.ModelConfig:
    """Triton's model configuration for what this version actually serves with."""
    sig, cfg = mv.signature, mv.config
    batched = sig.max_batch_size > 0
    out = mc.ModelConfig(
        name=mv.model,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=sig.max_batch_size,
        input=_tensors(sig.inputs, batched, mc.ModelInput),
        output=_tensors(sig.outputs, batched, mc.ModelOutput),
        version_policy=_version_policy(cfg.versions),
        default_model_filename=MODEL_FILE,
    )
    if batched and cfg.batching.enabled:
        b = cfg.batching
        out.dynamic_batching.preferred_batch_size.extend(b.preferred_batch_sizes)
        out.dynamic_batching.max_queue_delay_microseconds = b.max_queue_delay_us
        out.dynamic_batching.default_queue_policy.max_queue_size = b.max_queue_size
        out.dynamic_batching.default_queue_policy.allow_timeout_override = True
    gpu = any(p in _GPU_PROVIDERS for p in mv.providers)
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    out.instance_group.add(name=f"{mv.model}_0", kind=kind, count=mv.instances)
    if "TensorrtExecutionProvider" in mv.providers:
        out.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    out.parameters["default_version"].string_value = default_version
    out.parameters["execution_providers"].string_value = ",".join(mv.providers)
    return out


def _duration(d: pb.StatisticDuration, count: int, seconds: float) -> None:
    d.count = count
    d.ns = int(seconds * 1e9)


def model_statistics(mv: ModelVersion) -> pb.ModelStatistics:
    """Durations in nanoseconds. compute_infer is the whole run of the request's batch (inputs
    concatenated, then ONNX Runtime), not split further: compute_input and compute_output are
    counted with 0 ns. Counts restart when a version is reloaded."""
    s = mv.stats
    out = pb.ModelStatistics(
        name=mv.model,
        version=mv.version,
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
    )
    st = out.inference_stats
    _duration(st.success, s.success_count, s.success_s)
    _duration(st.fail, s.failure_count, s.failure_s)
    _duration(st.queue, s.success_count, s.queue_s)
    _duration(st.compute_input, s.success_count, 0.0)
    _duration(st.compute_infer, s.success_count, s.compute_s)
    _duration(st.compute_output, s.success_count, 0.0)
    for size, (count, seconds) in sorted(s.batch_sizes.items()):
        b = out.batch_stats.add(batch_size=size)
        _duration(b.compute_input, count, 0.0)
        _duration(b.compute_infer, count, seconds)
        _duration(b.compute_output, count, 0.0)
    return out
