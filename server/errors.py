"""The server's exceptions. They know nothing of the transport: one table at the gRPC edge
(``ortserve.edge.status``) maps them to status codes, and each names the transport-neutral
``outcome`` that metrics and logs record for a request that ends with it.

    ServeError                    outcome              gRPC status at the edge
     ├── ModelNotFound            not_found            NOT_FOUND: no such model or version loaded
     ├── InvalidInput             invalid_input        INVALID_ARGUMENT: the request does not fit
     │    └── FlagsError          invalid_input        (a flags document that is refused)
     ├── QueueFull                queue_full           RESOURCE_EXHAUSTED: the batcher's queue is full
     ├── Overloaded               overloaded           RESOURCE_EXHAUSTED: over the server's bound on request
     │                                                 bytes or RPCs in flight (admission control)
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

Messages that quote what a client sent (names, versions, ids) quote it through ``quoted``: at most
``QUOTE_LIMIT`` characters, control characters escaped, so that an error can neither grow with
the request nor forge a log line.
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
    "Overloaded",
    "PermissionDenied",
    "ProviderUnavailable",
    "QueueFull",
    "ServeError",
    "Unauthenticated",
    "Unavailable",
    "quoted",
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


class Overloaded(ServeError):
    """Refused at once because the server holds as much as it may (request bytes or RPCs in
    flight); ``reason`` ("bytes", "rpcs") labels the metric that counts it."""

    outcome = "overloaded"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


QUOTE_LIMIT = 80
_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A client's string as an error message or a log line quotes it: in single quotes, with
    backslashes, quotes and unprintable characters escaped (``\\n``, ``\\x1b``), cut after ``limit``
    characters with the full length said.

        quoted("digits")        # 'digits'
        quoted("a\nb")          # 'a\nb'  (a backslash and an n: one line)
        quoted("x" * 100_000)   # 'xxx…x'… (100000 characters)
    """
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit]
    if not cut.isprintable() or "\\" in cut or "'" in cut:
        cut = "".join(_escape(c) for c in cut)
    if len(text) > limit:
        return f"'{cut}'… ({len(text)} characters)"
    return f"'{cut}'"
