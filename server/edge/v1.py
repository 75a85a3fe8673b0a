"""``ortserve.v1.Inference``: the project's own API (raw-bytes tensors)."""

from __future__ import annotations

from functools import partial

import grpc

from ortserve._proto.ortserve.v1 import inference_pb2 as pb
from ortserve._proto.ortserve.v1 import inference_pb2_grpc as pb_grpc
from ortserve.core import InferenceCore, InferRequest, InferResponse
from ortserve.edge import feedback
from ortserve.edge.call import Edge, deadline_from, invocation_metadata, new_request_id
from ortserve.edge.codec import encode_outputs, wire_tensor
from ortserve.errors import InvalidInput, quoted

__all__ = ["API", "InferenceServicer", "decode", "encode"]

API = "v1"


def decode(request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> InferRequest:
    """The request with each input's header checked; BYTES values stay encoded (ortserve.tensors)."""
    inputs = {}
    for t in request.inputs:
        if t.name in inputs:
            raise InvalidInput(f"input {quoted(t.name)} is given twice")
        inputs[t.name] = wire_tensor(t.name, t.dtype, t.shape, partial(getattr, t, "data"))  # read later
    md = invocation_metadata(context)
    return InferRequest(
        model=request.model,
        inputs=inputs,
        version=request.version,
        outputs=list(request.outputs) or None,
        deadline=deadline_from(context),
        priority=request.priority,
        request_id=request.request_id or md.get("x-request-id") or new_request_id(),
        targeting_key=request.targeting_key or md.get("x-targeting-key", ""),
        attributes=md,
        api=API,
    )


async def encode(response: InferResponse) -> pb.PredictResponse:
    out = pb.PredictResponse(
        model=response.model,
        version=response.version,
        request_id=response.request_id,
        variant=response.variant,
    )
    for name, dtype, shape, data in await encode_outputs(response.outputs):
        out.outputs.append(pb.Tensor(name=name, dtype=dtype, shape=shape, data=data))
    return out


def _spec(spec) -> pb.TensorSpec:
    return pb.TensorSpec(name=spec.name, dtype=spec.dtype, shape=list(spec.shape))


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(self, core: InferenceCore, edge: Edge) -> None:
        self.core = core
        self.edge = edge

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        async with self.edge.call(context, API, request.model):
            response = await self.core.infer(decode(request, context))
            return await encode(response)

    async def Feedback(self, request: pb.FeedbackRequest, context) -> pb.FeedbackResponse:
        async with self.edge.call(context, API):
            results = await self.core.feedback(feedback.from_pb(request))
            return feedback.to_pb(results)

    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        async with self.edge.call(context, API):
            return pb.ListModelsResponse(
                models=[
                    pb.ModelSummary(name=m.name, versions=m.versions, default_version=m.default_version)
                    for m in self.core.list_models()
                ]
            )

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        async with self.edge.call(context, API):
            mv = self.core.version(request.model, request.version)
            model = self.core.model(request.model)
            sig = mv.signature
            return pb.ModelMetadataResponse(
                name=mv.model,
                version=mv.version,
                versions=model.versions,
                inputs=[_spec(s) for s in sig.inputs],
                outputs=[_spec(s) for s in sig.outputs],
                max_batch_size=sig.max_batch_size,
                dynamic_batching=sig.max_batch_size > 0 and mv.config.batching.enabled,
                providers=mv.providers,
                default_version=model.default_version,
                sha256=mv.sha256,
            )


def add_to_server(core: InferenceCore, edge: Edge, server: grpc.aio.Server) -> str:
    pb_grpc.add_InferenceServicer_to_server(InferenceServicer(core, edge), server)
    return pb.DESCRIPTOR.services_by_name["Inference"].full_name
