"""Senders: one request prepared (encoded once, like a client cache) and sent over and over, on
ortserve.v1 Predict or V2 ModelInfer with raw contents. Each returns what served it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmarks.loadgen.loops import Sender

__all__ = ["predict_sender", "v2_request", "v2_sender", "v2_stub"]


def predict_sender(
    client: Any,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout: float = 30,
    version: str = "",
    targeting_key: str = "",
) -> Sender:
    """One prepared ortserve.v1 Predict request on ``client.stub`` (an ortserve AsyncClient)."""
    from ortserve.client import build_request

    request = build_request(model, inputs, version=version, targeting_key=targeting_key)

    async def send(_: int) -> str | None:
        resp = await client.stub.Predict(request, timeout=timeout)
        return f"{resp.version}/{resp.variant}" if resp.variant else resp.version

    return send


def v2_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    version: str = "",
    parameters: Mapping[str, int | str] | None = None,
) -> Any:
    """A V2 ``ModelInferRequest`` with the tensors in ``raw_input_contents`` (little-endian, C order).

    ``parameters``: ints go as int64_param (e.g. Triton's ``timeout`` in microseconds), strings as
    string_param."""
    from ortserve._proto.inference import grpc_service_pb2 as pb
    from ortserve.edge.codec import v2_from_numpy

    request = pb.ModelInferRequest(model_name=model, model_version=str(version or ""))
    for key, value in (parameters or {}).items():
        if isinstance(value, str):
            request.parameters[key].string_param = value
        else:
            request.parameters[key].int64_param = int(value)
    for name, array in inputs.items():
        datatype, shape, data = v2_from_numpy(np.asarray(array))
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)
    return request


def v2_stub(channel: Any) -> Any:
    from ortserve._proto.inference import grpc_service_pb2_grpc as pb_grpc

    return pb_grpc.GRPCInferenceServiceStub(channel)


def v2_sender(
    channel: Any,
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout: float = 30,
    version: str = "",
    parameters: Mapping[str, int | str] | None = None,
) -> Sender:
    """One prepared V2 ModelInfer request (raw contents) sent over and over, on a grpc.aio channel."""
    stub = v2_stub(channel)
    request = v2_request(model, inputs, version=version, parameters=parameters)

    async def send(_: int) -> str | None:
        resp = await stub.ModelInfer(request, timeout=timeout)
        variant = resp.parameters["variant"].string_param if "variant" in resp.parameters else ""
        return f"{resp.model_version}/{variant}" if variant else resp.model_version

    return send
