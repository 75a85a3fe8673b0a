"""``inference.GRPCInferenceService``: the Open Inference Protocol (KServe V2) with Triton's
extensions (ModelConfig, ModelStatistics, repository control), over the same core as v1.

    import tritonclient.grpc as triton
    client = triton.InferenceServerClient("127.0.0.1:8001")
    x = triton.InferInput("input", [1, 64], "FP32"); x.set_data_from_numpy(pixels)
    client.infer("digits", [x]).as_numpy("label")

ModelInfer takes typed ``contents`` or ``raw_input_contents`` and answers with raw output
contents. Request parameters: ``priority`` (1 highest, 0 default), ``timeout`` (microseconds
in the queue, bounded by the gRPC deadline), ``targeting_key``, and any other string
parameter becomes a routing attribute. The flag variant that served a request comes back
as the response parameter ``variant``. ModelStreamInfer answers each request in the order
they finish; an error goes into that response's ``error_message`` and the stream goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from ortserve import __version__
from ortserve._proto.inference import grpc_service_pb2 as pb
from ortserve._proto.inference import grpc_service_pb2_grpc as pb_grpc
from ortserve._proto.inference import model_config_pb2 as mc
from ortserve.core.core import InferenceCore, InferRequest, InferResponse
from ortserve.core.models import ModelVersion
from ortserve.dtypes import V2_NAMES
from ortserve.edge.call import (
    deadline_from,
    infer_or_abort,
    infer_or_error,
    invocation_metadata,
    new_request_id,
    status_for,
    version_or_abort,
)
from ortserve.edge.codec import contents_to_numpy, v2_from_numpy, v2_to_numpy
from ortserve.errors import InvalidInput, ServeError
from ortserve.repository.config import MODEL_FILE, VersionPolicy

__all__ = ["GRPCInferenceServicer", "add_to_server", "decode", "encode"]

API = "v2"
STREAM_WINDOW = 256  # stream requests in flight or answered but not yet taken by the client
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["model_configuration", "model_repository", "schedule_policy", "statistics", "parameters"]
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")
# Our dtype names -> model_config.proto's DataType (whose name for BYTES is TYPE_STRING).
_DATA_TYPES = {
    ours: mc.DataType.Value("TYPE_" + ("STRING" if v2 == "BYTES" else v2)) for ours, v2 in V2_NAMES.items()
}


def _value(p: pb.InferParameter) -> bool | int | float | str | None:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(
            f"parameter '{name}': {value!r}, expected an integer >= 0 (int64_param or uint64_param)"
        )
    return value


def _check_tensor_parameters(kind: str, name: str, params) -> None:
    for key in params:
        if key.startswith("shared_memory"):
            raise InvalidInput(
                f"{kind} '{name}': shared memory is not supported, send the data in the request"
            )
        if key == "classification":
            raise InvalidInput(f"{kind} '{name}': the classification extension is not supported")


def _inputs(request: pb.ModelInferRequest) -> dict:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs "
            f"({', '.join(repr(t.name) for t in request.inputs)}), expected one per input"
        )
    inputs = {}
    for i, t in enumerate(request.inputs):
        if t.name in inputs:
            raise InvalidInput(f"input '{t.name}' is given twice")
        if t.parameters:
            _check_tensor_parameters("input", t.name, t.parameters)
        if not raw:
            inputs[t.name] = contents_to_numpy(t.name, t.datatype, t.shape, t.contents)
        elif t.HasField("contents") and t.contents.ListFields():
            raise InvalidInput(
                f"input '{t.name}': both contents and raw_input_contents given, expected one of them"
            )
        else:
            inputs[t.name] = v2_to_numpy(t.name, t.datatype, t.shape, raw[i])
    return inputs


def decode(request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> InferRequest:
    inputs = _inputs(request)
    outputs = None
    if request.outputs:
        outputs = []
        for o in request.outputs:
            if o.parameters:
                _check_tensor_parameters("output", o.name, o.parameters)
            outputs.append(o.name)
    md = invocation_metadata(context)
    deadline = deadline_from(context)
    priority = 0
    targeting_key = md.get("x-targeting-key", "")
    attributes = md
    for key, p in request.parameters.items():
        value = _value(p)
        if key == "priority":
            priority = _count(key, value)
        elif key == "timeout":
            # Triton: microseconds the request may wait before it runs; 0 is no timeout.
            timeout_us = _count(key, value)
            if timeout_us:
                limit = time.monotonic() + timeout_us / 1e6
                deadline = limit if deadline is None else min(deadline, limit)
        elif key in ("sequence_id", "sequence_start", "sequence_end") and value:
            raise InvalidInput(
                f"parameter '{key}': ortserve has no sequence batching, expected no sequence parameters"
            )
        elif key == "targeting_key":
            if not isinstance(value, str):
                raise InvalidInput(f"parameter 'targeting_key': {value!r}, expected a string_param")
            targeting_key = value
        elif isinstance(value, str):
            attributes[key] = value
    return InferRequest(
        model=request.model_name,
        inputs=inputs,
        version=request.model_version,
        outputs=outputs,
        deadline=deadline,
        priority=priority,
        request_id=request.id or md.get("x-request-id") or new_request_id(),
        targeting_key=targeting_key,
        attributes=attributes,
    )


def encode(response: InferResponse, request_id: str) -> pb.ModelInferResponse:
    """The response with raw output contents; ``request_id`` is the request's ``id`` field,
    echoed as given (empty when the client sent none)."""
    out = pb.ModelInferResponse(model_name=response.model, model_version=response.version, id=request_id)
    if response.variant:
        out.parameters["variant"].string_param = response.variant
    for name, array in response.outputs.items():
        datatype, shape, data = v2_from_numpy(array)
        out.outputs.add(name=name, datatype=datatype, shape=shape)
        out.raw_output_contents.append(data)
    return out


# -- ModelConfig and ModelStatistics ------------------------------------------------------------
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
    gpu = any(p in _GPU_PROVIDERS for p in mv.pool.providers)
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    out.instance_group.add(name=f"{mv.model}_0", kind=kind, count=mv.pool.instances)
    if "TensorrtExecutionProvider" in mv.pool.providers:
        out.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    out.parameters["default_version"].string_value = default_version
    out.parameters["execution_providers"].string_value = ",".join(mv.pool.providers)
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


def _unimplemented(feature: str, instead: str):
    async def method(self, request, context: grpc.aio.ServicerContext):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"ortserve does not implement {feature}: {instead}"
        )

    return method


class GRPCInferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore, workers: int = 1) -> None:
        self.core = core
        self.workers = workers

    async def _version(self, name: str, version: str, context: grpc.aio.ServicerContext) -> ModelVersion:
        return await version_or_abort(self.core, context, name, version)

    # -- health and metadata -------------------------------------------------------------------
    async def ServerLive(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        # While draining the server refuses new calls, so a call that gets here is served.
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        try:
            self.core.models.get(request.name, request.version)
        except ServeError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="ortserve", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        mv = await self._version(request.name, request.version, context)
        versions = [mv.version] if request.version else self.core.models.models[mv.model].sorted_versions()
        meta = pb.ModelMetadataResponse.TensorMetadata
        sig = mv.signature
        return pb.ModelMetadataResponse(
            name=mv.model,
            versions=versions,
            platform=PLATFORM,
            inputs=[meta(name=s.name, datatype=V2_NAMES[s.dtype], shape=s.shape) for s in sig.inputs],
            outputs=[meta(name=s.name, datatype=V2_NAMES[s.dtype], shape=s.shape) for s in sig.outputs],
        )

    async def ModelConfig(self, request: pb.ModelConfigRequest, context) -> pb.ModelConfigResponse:
        mv = await self._version(request.name, request.version, context)
        default = self.core.models.models[mv.model].default_version() or ""
        return pb.ModelConfigResponse(config=model_config(mv, default))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context
    ) -> pb.ModelStatisticsResponse:
        models = self.core.models
        if request.version:
            versions = [await self._version(request.name, request.version, context)]
        else:
            names = models.ready_models()
            if request.name:
                if request.name not in names:
                    await self._version(request.name, "", context)  # aborts with NOT_FOUND
                names = [request.name]
            versions = [
                models.models[n].versions[v] for n in names for v in models.models[n].sorted_versions()
            ]
        return pb.ModelStatisticsResponse(model_stats=[model_statistics(mv) for mv in versions])

    # -- inference -----------------------------------------------------------------------------
    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        return await infer_or_abort(
            self.core,
            context,
            API,
            request.model_name,
            lambda: decode(request, context),
            lambda response: encode(response, request.id),
        )

    async def _stream_one(self, request: pb.ModelInferRequest, context) -> pb.ModelStreamInferResponse:
        response, code, message = await infer_or_error(
            self.core,
            API,
            request.model_name,
            lambda: decode(request, context),
            lambda response: encode(response, request.id),
        )
        if response is not None:
            return pb.ModelStreamInferResponse(infer_response=response)
        failed = pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        return pb.ModelStreamInferResponse(error_message=f"{code.name}: {message}", infer_response=failed)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Requests run concurrently (so that they can share batches) and are answered as they finish.
        # At most STREAM_WINDOW are read ahead of the answers the client has taken: a client that
        # sends without reading is held back by gRPC flow control instead of growing our memory.
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        running: set[asyncio.Task] = set()

        async def one(request: pb.ModelInferRequest) -> None:
            answers.put_nowait(await self._stream_one(request, context))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await window.acquire()
                    task = asyncio.ensure_future(one(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.wait(set(running))
            finally:
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
                window.release()
            await reader  # re-raises what ended the client's side of the stream
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    # -- repository ----------------------------------------------------------------------------
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context
    ) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                index(name=name, version=version, state=state, reason=reason)
                for name, version, state, reason in self.core.models.index()
                if not request.ready or state == "READY"
            ]
        )

    async def _control(self, request, context, action: str) -> None:
        if self.workers > 1:
            # Each worker process has its own table of loaded models: a load or unload would reach
            # whichever worker took the connection, and the others would go on as before.
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"repository {action} acts on one process and this server runs --workers {self.workers}: "
                "change the repository folder instead (with --poll-interval every worker follows it)",
            )
        try:
            if request.repository_name:
                raise InvalidInput(
                    f"repository_name '{request.repository_name}': ortserve serves one repository, "
                    "expected an empty repository_name"
                )
            for key in request.parameters:
                if key == "config" or key.startswith("file:"):
                    raise InvalidInput(
                        f"parameter '{key}': ortserve loads models only from the repository, "
                        "expected no config or file overrides"
                    )
            if action == "load":
                await self.core.models.load_model(request.model_name)
            else:
                await self.core.models.unload_model(request.model_name)
        except ServeError as e:
            await context.abort(status_for(e), str(e))

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context
    ) -> pb.RepositoryModelLoadResponse:
        await self._control(request, context, "load")
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context
    ) -> pb.RepositoryModelUnloadResponse:
        await self._control(request, context, "unload")
        return pb.RepositoryModelUnloadResponse()

    # -- not implemented: answered with a reason rather than grpc's bare "Method not implemented!"
    _SHM = "send tensors in raw_input_contents instead"
    SystemSharedMemoryStatus = _unimplemented("system shared memory", _SHM)
    SystemSharedMemoryRegister = _unimplemented("system shared memory", _SHM)
    SystemSharedMemoryUnregister = _unimplemented("system shared memory", _SHM)
    CudaSharedMemoryStatus = _unimplemented("CUDA shared memory", _SHM)
    CudaSharedMemoryRegister = _unimplemented("CUDA shared memory", _SHM)
    CudaSharedMemoryUnregister = _unimplemented("CUDA shared memory", _SHM)
    TraceSetting = _unimplemented("trace settings", "request timings are in the Prometheus metrics")
    LogSettings = _unimplemented("log settings", "set log_level at start (--log-level)")


def add_to_server(core: InferenceCore, server: grpc.aio.Server, workers: int = 1) -> str:
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(GRPCInferenceServicer(core, workers), server)
    return pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
