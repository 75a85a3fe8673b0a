"""The server's exceptions. They know nothing of the transport: one table at the gRPC edge
(``ortserve.edge.status``) maps them to status codes, and each names the transport-neutral
``outcome`` that metrics and logs record for a request that ends with it.

    ServeError                    outcome              gRPC status at the edge
     ├── ModelNotFound            not_found            NOT_FOUND: no such model or version loaded
     ├── InvalidInput             invalid_input        INVALID_ARGUMENT: the request does not fit
     │    └── FlagsError          invalid_input        (a flags document that is refused)
     ├── QueueFull                queue_full           RESOURCE_EXHAUSTED: the batcher's queue is full
     ├── DeadlineExceeded         deadline_exceeded    DEADLINE_EXCEEDED: expired before it ran
     ├── Unavailable              unavailable          UNAVAILABLE: unloading or draining (retryable)
     ├── FailedPrecondition       failed_precondition  FAILED_PRECONDITION: not in this server's state
     │    └── ProviderUnavailable failed_precondition  (a version asks for an execution provider that
     │                                                  ONNX Runtime cannot create here: refused at load)
     ├── Unauthenticated          unauthenticated      UNAUTHENTICATED: no or bad credentials (auth file set)
     ├── PermissionDenied         permission_denied    PERMISSION_DENIED: the caller's roles do not allow it
     ├── InferenceFailed          failed               INTERNAL: ONNX Runtime failed on the batch
     └── InternalError            internal             INTERNAL: a bug; logged with its traceback

A request cancelled by its caller ends with the outcome ``cancelled`` (``asyncio.CancelledError``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CANCELLED",
    "OK",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FlagsError",
    "InferenceFailed",
    "InternalError",
    "InvalidInput",
    "ModelNotFound",
    "PermissionDenied",
    "ProviderUnavailable",
    "QueueFull",
    "ServeError",
    "Unauthenticated",
    "Unavailable",
]

OK = "ok"
CANCELLED = "cancelled"


class ServeError(Exception):
    """Base of every error reported to a caller. ``recorded`` is set once the request it ended
    has been counted, so that the edge does not count it twice."""

    outcome: ClassVar[str] = "error"
    recorded: bool = False


class ModelNotFound(ServeError):
    outcome = "not_found"


class InvalidInput(ServeError):
    outcome = "invalid_input"


class FlagsError(InvalidInput):
    """A flags document that is refused. ``reason`` is a short label for metrics:
    json, schema, operator, weights, version, size, depth, io."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QueueFull(ServeError):
    outcome = "queue_full"


class DeadlineExceeded(ServeError):
    outcome = "deadline_exceeded"


class Unavailable(ServeError):
    outcome = "unavailable"


class FailedPrecondition(ServeError):
    outcome = "failed_precondition"


class Unauthenticated(ServeError):
    """No credentials, or credentials that do not verify (unknown API key, bad or expired JWT)."""

    outcome = "unauthenticated"


class PermissionDenied(ServeError):
    """An authenticated caller whose roles do not grant the RPC (or the model it names)."""

    outcome = "permission_denied"


class ProviderUnavailable(FailedPrecondition):
    """A model version asks for a GPU (or other accelerator) execution provider that ONNX Runtime cannot
    create on this machine, and CPU fallback is not allowed for it. Raised when its sessions are created;
    the version is refused, and a server that meets one at startup exits (status 3)."""


class InferenceFailed(ServeError):
    outcome = "failed"


class InternalError(ServeError):
    outcome = "internal"
