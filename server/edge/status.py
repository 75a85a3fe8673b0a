"""The one table from the error tree (``ortserve.errors``) to gRPC status codes.

Every servicer, interceptor and stream reports errors through ``status_for``; nothing else in
the server knows gRPC status codes.
"""

from __future__ import annotations

import grpc

from ortserve import errors

__all__ = ["STATUS", "status_for"]

STATUS: dict[type[errors.ServeError], grpc.StatusCode] = {
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.InferenceFailed: grpc.StatusCode.INTERNAL,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


def status_for(error: errors.ServeError) -> grpc.StatusCode:
    """The status of the nearest class in the error's MRO that the table names (INTERNAL if none)."""
    for cls in type(error).__mro__:
        code = STATUS.get(cls)  # type: ignore[call-overload]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
