"""The core: the request path, independent of any transport.

Owns ``InferenceCore`` (``infer`` and the questions servicers ask about what is loaded), the
routing seam (``Routing``, with ``DefaultRouting`` as its null object), validation against a
version's signature, the dynamic batcher, the ONNX Runtime session pool, the table of loaded
models (``ModelManager``: loading, draining, unloading), the core hooks that observe
completed requests, and two seams with null objects: the feedback join (``FeedbackJoin``,
``NoFeedback``) and tracing (``Tracing``, ``NoTracing``).

May import: ``ortserve.repository`` and the base modules (``errors``, ``metrics``, ``dtypes``,
``schema``). Never gRPC, never ``edge``, ``rollout`` or ``ops``.
"""

from ortserve.core.core import InferenceCore, ModelSummary
from ortserve.core.feedback import FeedbackItem, FeedbackJoin, FeedbackResult, NoFeedback, prediction_of
from ortserve.core.hooks import CoreHook, Hooks
from ortserve.core.models import ModelManager, ModelVersion
from ortserve.core.request import Completed, InferRequest, InferResponse, Route
from ortserve.core.routing import DefaultRouting, Routing
from ortserve.core.runtime import SessionDefaults
from ortserve.core.tracing import NO_TRACING, BatchTracing, NoTracing, Tracing

__all__ = [
    "NO_TRACING",
    "BatchTracing",
    "Completed",
    "CoreHook",
    "DefaultRouting",
    "FeedbackItem",
    "FeedbackJoin",
    "FeedbackResult",
    "Hooks",
    "InferRequest",
    "InferResponse",
    "InferenceCore",
    "ModelManager",
    "ModelSummary",
    "ModelVersion",
    "NoFeedback",
    "NoTracing",
    "Route",
    "Routing",
    "SessionDefaults",
    "Tracing",
    "prediction_of",
]
