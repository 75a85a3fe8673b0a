"""The Open Inference Protocol's ModelInferRequest -> InferRequest and InferResponse ->
ModelInferResponse.

Inputs come as typed ``contents`` or as ``raw_input_contents`` (one per input, not both); outputs
go back as raw contents. Request parameters: ``priority`` (1 highest, 0 default), ``timeout``
(microseconds in the queue, bounded by the gRPC deadline), ``targeting_key``, and any other
string parameter becomes a routing attribute. The flag variant that served a request comes back
as the response parameter ``variant``.
"""

from __future__ import annotations

import time
from functools import partial

import grpc

from ortserve._proto.inference import grpc_service_pb2 as pb
from ortserve.core import InferRequest, InferResponse
from ortserve.edge.call import deadline_from, invocation_metadata, new_request_id
from ortserve.edge.codec import contents_tensor, encode_outputs, v2_wire_tensor
from ortserve.errors import InvalidInput, quoted
from ortserve.tensors import Tensor

__all__ = ["API", "decode", "encode"]

API = "v2"


def _value(p: pb.InferParameter) -> bool | int | float | str | None:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _shown(value: object) -> str:
    return quoted(value) if isinstance(value, str) else repr(value)  # the others are numbers or bools


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(
            f"parameter {quoted(name)}: {_shown(value)}, expected an integer >= 0 (int64_param or uint64_param)"
        )
    return value


def _check_tensor_parameters(kind: str, name: str, params) -> None:
    for key in params:
        if key.startswith("shared_memory"):
            raise InvalidInput(
                f"{kind} {quoted(name)}: shared memory is not supported, send the data in the request"
            )
        if key == "classification":
            raise InvalidInput(f"{kind} {quoted(name)}: the classification extension is not supported")


def _inputs(request: pb.ModelInferRequest) -> dict[str, Tensor]:
    """Each input with its header checked; BYTES and typed contents stay encoded (ortserve.tensors)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        names = ", ".join(quoted(t.name) for t in request.inputs[:8])
        raise InvalidInput(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs "
            f"({names}{', …' if len(request.inputs) > 8 else ''}), expected one per input"
        )
    inputs: dict[str, Tensor] = {}
    for i, t in enumerate(request.inputs):
        if t.name in inputs:
            raise InvalidInput(f"input {quoted(t.name)} is given twice")
        if t.parameters:
            _check_tensor_parameters("input", t.name, t.parameters)
        if not raw:
            inputs[t.name] = contents_tensor(t.name, t.datatype, t.shape, t.contents)
        elif t.HasField("contents") and t.contents.ListFields():
            raise InvalidInput(
                f"input {quoted(t.name)}: both contents and raw_input_contents given, expected one of them"
            )
        else:
            inputs[t.name] = v2_wire_tensor(
                t.name, t.datatype, t.shape, partial(raw.__getitem__, i)
            )  # read later
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
                raise InvalidInput(f"parameter 'targeting_key': {_shown(value)}, expected a string_param")
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
        api=API,
    )


async def encode(response: InferResponse, request_id: str) -> pb.ModelInferResponse:
    """The response with raw output contents; ``request_id`` is the request's ``id`` field, echoed
    as given; when the client sent none, the id the server gave the request (what feedback joins on)
    is the response parameter ``request_id``."""
    out = pb.ModelInferResponse(model_name=response.model, model_version=response.version, id=request_id)
    if not request_id:
        out.parameters["request_id"].string_param = response.request_id
    if response.variant:
        out.parameters["variant"].string_param = response.variant
    for name, datatype, shape, data in await encode_outputs(response.outputs, v2=True):
        out.outputs.add(name=name, datatype=datatype, shape=shape)
        out.raw_output_contents.append(data)
    return out
