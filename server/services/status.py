"""The one table from the core's exceptions to gRPC status codes, and the shared wrapper
that runs an inference request for any servicer: timing, error mapping, metrics, logging."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from .. import errors
from ..core import InferenceCore, InferRequest, InferResponse

__all__ = ["STATUS", "status_for", "infer_or_abort", "new_request_id", "deadline_from"]

log = logging.getLogger("ortserve.requests")

STATUS: dict[type[errors.ServeError], grpc.StatusCode] = {
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.InferenceFailed: grpc.StatusCode.INTERNAL,
}

T = TypeVar("T")


def status_for(error: errors.ServeError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = STATUS.get(cls)  # type: ignore[call-overload]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def new_request_id() -> str:
    return uuid.uuid4().hex


def deadline_from(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return time.monotonic() + remaining


async def infer_or_abort(core: InferenceCore, context: grpc.aio.ServicerContext, api: str, model: str,
                         decode: Callable[[], InferRequest], encode: Callable[[InferResponse], T]) -> T:
    """Decode, run and encode one request. A core error aborts the RPC with its status code and
    the core's message; the request is counted in the metrics whatever happens."""
    started = time.monotonic()
    request: InferRequest | None = None
    response: InferResponse | None = None
    code = grpc.StatusCode.OK
    message = ""
    try:
        request = decode()
        response = await core.infer(request)
        return encode(response)
    except errors.ServeError as e:
        code, message = status_for(e), str(e)
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as e:
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}"
        log.exception("request %s: internal error", request.request_id if request else "")
    finally:
        counted = request or InferRequest(model=model, inputs={})
        core.record(counted, response if code == grpc.StatusCode.OK else None, api, code.name, started)
    rid = request.request_id if request else ""
    log.debug("request %s failed: %s %s", rid, code.name, message, extra={"request_id": rid})
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")
