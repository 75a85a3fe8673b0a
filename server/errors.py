"""The core's exceptions. They know nothing of the transport: one table at the gRPC edge
(``ortserve.edge.call``) maps them to status codes.

    ServeError
     ├── ModelNotFound        the model or version is not in the repository (NOT_FOUND)
     ├── InvalidInput         the request does not fit the model's signature (INVALID_ARGUMENT)
     ├── QueueFull            the batcher's queue is at max_queue_size (RESOURCE_EXHAUSTED)
     ├── DeadlineExceeded     the request's deadline passed before it ran (DEADLINE_EXCEEDED)
     ├── Unavailable          the model is unloading or the server is draining (UNAVAILABLE)
     └── InferenceFailed      ONNX Runtime failed on the batch (INTERNAL)
"""

from __future__ import annotations

__all__ = [
    "DeadlineExceeded",
    "InferenceFailed",
    "InvalidInput",
    "ModelNotFound",
    "QueueFull",
    "ServeError",
    "Unavailable",
]


class ServeError(Exception):
    """Base of every error the core reports to a caller."""


class ModelNotFound(ServeError):
    pass


class InvalidInput(ServeError):
    pass


class QueueFull(ServeError):
    pass


class DeadlineExceeded(ServeError):
    pass


class Unavailable(ServeError):
    pass


class InferenceFailed(ServeError):
    pass
