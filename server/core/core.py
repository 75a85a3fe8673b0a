"""The protocol-neutral inference path: InferRequest in, InferResponse out.

Both gRPC APIs decode into an InferRequest and call ``InferenceCore.infer``; routing,
validation, batching and metrics exist here once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ortserve.core.models import ModelManager
from ortserve.metrics import UNKNOWN_MODEL, Metrics, VersionStats
from ortserve.rollout.router import Route, Router
from ortserve.rollout.shadow import ShadowMirror

__all__ = ["InferRequest", "InferResponse", "InferenceCore"]


@dataclass(slots=True)
class InferRequest:
    model: str
    inputs: dict[str, np.ndarray]
    version: str = ""
    outputs: list[str] | None = None
    deadline: float | None = None  # time.monotonic() seconds
    priority: int = 0
    request_id: str = ""
    targeting_key: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    route: Route | None = None  # set by the core once routed, so that failures count under it


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    request_id: str
    variant: str = ""
    queue_s: float = 0.0
    compute_s: float = 0.0
    stats: VersionStats | None = None


class InferenceCore:
    def __init__(
        self,
        models: ModelManager,
        metrics: Metrics,
        router: Router | None = None,
        shadow: ShadowMirror | None = None,
        access_log: bool = False,
    ) -> None:
        self.access_log = access_log  # read by the gRPC edge: one log line per request
        self.models = models
        self.metrics = metrics
        self.router = router if router is not None else Router(models)
        self.shadow = shadow if shadow is not None else ShadowMirror(metrics)
        self._unknown: dict[str, VersionStats] = {}

    async def infer(self, request: InferRequest) -> InferResponse:
        route = request.route = self.router.route(request)
        mv = route.version
        mv.check_outputs(request.outputs)
        result = await mv.infer(request.inputs, request.deadline, request.priority)
        outputs = result.outputs
        if route.shadow is not None:
            self.shadow.submit(request.model, mv.version, route.shadow, request.inputs, outputs)
        if request.outputs:
            outputs = {n: outputs[n] for n in request.outputs}
        return InferResponse(
            request.model,
            mv.version,
            outputs,
            request.request_id,
            route.variant,
            result.queue_s,
            result.compute_s,
            mv.stats,
        )

    def stats_for(self, request: InferRequest) -> VersionStats:
        """The stats a request that got no answer is counted under: its routed version, or, when it
        failed before routing, one requests-only label set per model (unknown models share one), so
        that a failure is never counted under a version it did not reach."""
        if request.route is not None:
            return request.route.version.stats
        # Labels never take unvalidated client strings: an unknown model counts as _unknown.
        model = request.model if request.model in self.models.models else UNKNOWN_MODEL
        stats = self._unknown.get(model)
        if stats is None:
            stats = self._unknown[model] = self.metrics.version(model, "", loaded=False)
        return stats

    def record(
        self, request: InferRequest, response: InferResponse | None, api: str, code: str, started: float
    ) -> None:
        duration = time.monotonic() - started
        if response is not None and response.stats is not None:
            response.stats.request(
                api, code, duration, response.queue_s, response.compute_s, response.variant
            )
        else:
            variant = request.route.variant if request.route is not None else ""
            self.stats_for(request).request(api, code, duration, variant=variant)
