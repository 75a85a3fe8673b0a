"""``inference.GRPCInferenceService``: the Open Inference Protocol (KServe V2) with Triton's
extensions (ModelConfig, ModelStatistics, repository control), over the same core as v1.

    import tritonclient.grpc as triton
    client = triton.InferenceServerClient("127.0.0.1:8001")
    x = triton.InferInput("input", [1, 64], "FP32"); x.set_data_from_numpy(pixels)
    client.infer("digits", [x]).as_numpy("label")

Requests are decoded and answered by ``ortserve.edge.v2_codec``; model configuration and
statistics come from ``ortserve.edge.triton``. ModelStreamInfer answers each request in the
order they finish; an error goes into that response's ``error_message`` and the stream goes on.
A ModelInfer to the virtual model ``ortserve.feedback`` is ground truth (``ortserve.edge.feedback``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from ortserve import __version__
from ortserve._proto.inference import grpc_service_pb2 as pb
from ortserve._proto.inference import grpc_service_pb2_grpc as pb_grpc
from ortserve.core import InferenceCore
from ortserve.dtypes import V2_NAMES
from ortserve.edge import feedback
from ortserve.edge.call import Edge
from ortserve.edge.triton import PLATFORM, model_config, model_statistics
from ortserve.edge.v2_codec import API, decode, encode
from ortserve.errors import FailedPrecondition, InvalidInput, quoted

__all__ = ["GRPCInferenceServicer", "add_to_server"]

STREAM_WINDOW = 256  # stream requests in flight or answered but not yet taken by the client
EXTENSIONS = ["model_configuration", "model_repository", "schedule_policy", "statistics", "parameters"]


def _unimplemented(feature: str, instead: str):
    async def method(self, request, context: grpc.aio.ServicerContext):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"ortserve does not implement {feature}: {instead}"
        )

    return method


class GRPCInferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore, edge: Edge, workers: int = 1) -> None:
        self.core = core
        self.edge = edge
        self.workers = workers

    # -- health and metadata -------------------------------------------------------------------
    async def ServerLive(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        # While draining the server refuses new calls, so a call that gets here is served.
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.core.is_ready(request.name, request.version))

    async def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="ortserve", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        async with self.edge.call(context, API):
            mv = self.core.version(request.name, request.version)
            versions = [mv.version] if request.version else self.core.model(mv.model).versions
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
        async with self.edge.call(context, API):
            mv = self.core.version(request.name, request.version)
            default = self.core.model(mv.model).default_version
            return pb.ModelConfigResponse(config=model_config(mv, default))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context
    ) -> pb.ModelStatisticsResponse:
        async with self.edge.call(context, API):
            if request.version:
                versions = [self.core.version(request.name, request.version)]
            else:
                versions = self.core.versions(request.name)
            return pb.ModelStatisticsResponse(model_stats=[model_statistics(mv) for mv in versions])

    # -- inference -----------------------------------------------------------------------------
    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        if request.model_name == feedback.FEEDBACK_MODEL:
            return await self._feedback(request, context)
        async with self.edge.call(context, API, request.model_name):
            response = await self.core.infer(decode(request, context))
            return await encode(response, request.id)

    async def _feedback(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        async with self.edge.call(context, API):
            items, sizes = feedback.from_v2(await self.core.decode(decode(request, context).inputs))
            return feedback.to_v2(await self.core.feedback(items), sizes, request.id)

    async def _stream_one(self, request: pb.ModelInferRequest, context) -> pb.ModelStreamInferResponse:
        async with self.edge.item(API, request.model_name) as call:
            response = await self.core.infer(decode(request, context))
            return pb.ModelStreamInferResponse(infer_response=await encode(response, request.id))
        failed = pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        return pb.ModelStreamInferResponse(
            error_message=f"{call.code.name}: {call.message}", infer_response=failed
        )

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Requests run concurrently (so that they can share batches) and are answered as they finish.
        # At most STREAM_WINDOW are read ahead of the answers the client has taken: a client that
        # sends without reading is held back by gRPC flow control instead of growing our memory.
        # Whatever ends the reading (the client half-closing, a message that does not parse, the
        # drain cutting the stream), every request read so far is answered first; an error then
        # ends the stream with its status.
        async with self.edge.call(context, API):
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
                finally:
                    while running:
                        await asyncio.wait(set(running))
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
                for name, version, state, reason in self.core.index()
                if not request.ready or state == "READY"
            ]
        )

    async def _control(self, request, context, action: str) -> None:
        async with self.edge.call(context, API):
            if self.workers > 1:
                # Each worker process has its own table of loaded models: a load or unload would
                # reach whichever worker took the connection, and the others would go on as before.
                raise FailedPrecondition(
                    f"repository {action} acts on one process and this server runs --workers {self.workers}: "
                    "change the repository folder instead (with --poll-interval every worker follows it)"
                )
            if request.repository_name:
                raise InvalidInput(
                    f"repository_name {quoted(request.repository_name)}: ortserve serves one repository, "
                    "expected an empty repository_name"
                )
            for key in request.parameters:
                if key == "config" or key.startswith("file:"):
                    raise InvalidInput(
                        f"parameter {quoted(key)}: ortserve loads models only from the repository, "
                        "expected no config or file overrides"
                    )
            if action == "load":
                await self.core.load(request.model_name)
            else:
                await self.core.unload(request.model_name)

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


def add_to_server(core: InferenceCore, edge: Edge, server: grpc.aio.Server, workers: int = 1) -> str:
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(GRPCInferenceServicer(core, edge, workers), server)
    return pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
