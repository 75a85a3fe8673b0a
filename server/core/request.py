"""What travels through the core: a decoded request, its answer, and the record of a finished one
that core hooks observe. Plain data: no transport, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ortserve.core.models import ModelVersion
from ortserve.errors import ServeError
from ortserve.tensors import Tensor

__all__ = ["Completed", "InferRequest", "InferResponse", "Route"]


@dataclass(slots=True)
class InferRequest:
    """One inference request as every protocol decodes it.

    ``api`` names the protocol it came in on ("v1", "v2"): a metric label, not behaviour.
    ``inputs`` may hold tensors still encoded (``ortserve.tensors.Encoded``: BYTES, V2 typed
    contents); the core replaces them with arrays once the request has passed its checks, so a
    request that reached its batcher (every one a hook sees answered OK) holds arrays."""

    model: str
    inputs: Mapping[str, Tensor]
    version: str = ""
    outputs: list[str] | None = None
    deadline: float | None = None  # time.monotonic() seconds
    priority: int = 0
    request_id: str = ""
    targeting_key: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    api: str = ""


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    request_id: str
    variant: str = ""
    queue_s: float = 0.0
    compute_s: float = 0.0


@dataclass(slots=True, frozen=True)
class Route:
    """Which loaded version serves a request, the flag variant that chose it ("" when no flag
    did), and the version that shadows it, if any (acted on by the shadow hook, not the core)."""

    version: ModelVersion
    variant: str = ""
    shadow: ModelVersion | None = None


@dataclass(slots=True)
class Completed:
    """A request the core has finished with, handed to every core hook.

    ``route`` is None when the request failed before it was routed (unknown model, bad input
    found while decoding); ``response`` is set when ``outcome`` is "ok", ``error`` otherwise
    (None for a cancelled request)."""

    request: InferRequest
    outcome: str
    duration_s: float
    route: Route | None = None
    response: InferResponse | None = None
    error: ServeError | None = None
