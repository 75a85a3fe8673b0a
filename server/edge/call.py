"""The one table from the core's exceptions to gRPC status codes, and the shared wrapper
that runs an inference request for any servicer: timing, error mapping, metrics, logging."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from ortserve import errors
from ortserve.core.core import InferenceCore, InferRequest, InferResponse
from ortserve.core.models import ModelVersion

__all__ = [
    "STATUS",
    "deadline_from",
    "infer_or_abort",
    "infer_or_error",
    "invocation_metadata",
    "new_request_id",
    "status_for",
]

log = logging.getLogger("ortserve.requests")
access_log = logging.getLogger("ortserve.access")

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


_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


async def version_or_abort(
    core: InferenceCore, context: grpc.aio.ServicerContext, model: str, version: str
) -> ModelVersion:
    """The loaded model version, or the RPC aborted with the core's status and message."""
    try:
        return core.models.get(model, version)
    except errors.ServeError as e:
        await context.abort(status_for(e), str(e))
        raise


def new_request_id() -> str:
    """Unique per server process and cheap (a random process prefix and a counter; uuid4 costs
    a few microseconds per request)."""
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"


def deadline_from(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return time.monotonic() + remaining


async def infer_or_error(
    core: InferenceCore,
    api: str,
    model: str,
    decode: Callable[[], InferRequest],
    encode: Callable[[InferResponse], T],
) -> tuple[T | None, grpc.StatusCode, str]:
    """Decode, run and encode one request: (encoded response, OK, "") or (None, status code, the
    core's message). The request is counted in the metrics whatever happens. For streams, whose
    errors travel in the stream; unary RPCs use ``infer_or_abort``."""
    started = time.monotonic()
    request: InferRequest | None = None
    response: InferResponse | None = None
    code = grpc.StatusCode.OK
    message = ""
    try:
        request = decode()
        response = await core.infer(request)
        return encode(response), code, message
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
        ok = code == grpc.StatusCode.OK
        core.record(counted, response if ok else None, api, code.name, started)
        if core.access_log:
            _access(counted, response if ok else None, api, code, message, started)
    rid = request.request_id if request else ""
    log.debug("request %s failed: %s %s", rid, code.name, message, extra={"request_id": rid})
    return None, code, message


def _access(
    request: InferRequest,
    response: InferResponse | None,
    api: str,
    code: grpc.StatusCode,
    message: str,
    started: float,
) -> None:
    """One access-log line per request (``--access-log``)."""
    ms = (time.monotonic() - started) * 1000
    version = response.version if response else (request.route.version.version if request.route else "")
    variant = response.variant if response else (request.route.variant if request.route else "")
    access_log.info(
        "%s %s %s v%s %s %.2fms%s",
        api,
        request.request_id,
        request.model,
        version,
        code.name,
        ms,
        f" {message}" if message else "",
        extra={
            "request_id": request.request_id,
            "model": request.model,
            "version": version,
            "variant": variant,
            "api": api,
            "code": code.name,
            "duration_ms": round(ms, 3),
        },
    )


async def infer_or_abort(
    core: InferenceCore,
    context: grpc.aio.ServicerContext,
    api: str,
    model: str,
    decode: Callable[[], InferRequest],
    encode: Callable[[InferResponse], T],
) -> T:
    """Decode, run and encode one request. A core error aborts the RPC with its status code and
    the core's message; the request is counted in the metrics whatever happens."""
    result, code, message = await infer_or_error(core, api, model, decode, encode)
    if result is not None:
        return result
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


def invocation_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata (binary ``-bin`` values left out)."""
    md = context.invocation_metadata() or ()
    return {k: v for k, v in md if isinstance(v, str)}
