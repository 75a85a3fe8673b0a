"""The protocol-neutral inference path and the questions servicers ask about what is loaded.

    response = await core.infer(InferRequest(model="digits", inputs={"input": x}, api="v1"))
    core.list_models(); core.version("digits", "2"); core.versions("digits")
    await core.feedback([FeedbackItem(request_id, labels=(3,))])    # ground truth, joined by request id
    await core.model_card("digits", "2")     # ("2", the version's MODEL_CARD.md)

``infer`` routes the request (the ``Routing`` strategy), checks it against the version's
signature from its tensors' headers, takes its bytes from the in-flight budget (``ByteBudget``:
over it, ``Overloaded`` at once), decodes what is still encoded (large tensors in a worker thread,
``Decoder``), submits it to that version's batcher and awaits the answer. Cheap checks come
first: nothing is decoded for a request that names an unknown model or has the wrong dtype or
shape. Every request it is given is counted once, whatever happens
(``ortserve_requests_total{outcome}``), and then handed to the core hooks. Failures that happen
before the core (a tensor header that does not parse) are counted through ``reject``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ortserve.core.budget import ByteBudget
from ortserve.core.decode import Decoder
from ortserve.core.feedback import FeedbackItem, FeedbackJoin, FeedbackResult, NoFeedback
from ortserve.core.hooks import Hooks
from ortserve.core.models import ModelManager, ModelVersion
from ortserve.core.request import Completed, InferRequest, InferResponse, Route
from ortserve.core.routing import DefaultRouting, Routing
from ortserve.core.tracing import NO_TRACING, Tracing
from ortserve.errors import (
    CANCELLED,
    OK,
    FailedPrecondition,
    InternalError,
    ModelNotFound,
    ServeError,
    quoted,
)
from ortserve.metrics import UNKNOWN_MODEL, Metrics, VersionStats
from ortserve.repository import MODEL_CARD, ManifestError, read_model_card
from ortserve.tensors import Tensor, request_nbytes

__all__ = ["InferenceCore", "ModelSummary"]

log = logging.getLogger("ortserve.core")


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    versions: list[str]  # loaded, in ascending order
    default_version: str  # "" when none is loaded


class InferenceCore:
    def __init__(
        self,
        models: ModelManager,
        metrics: Metrics,
        routing: Routing | None = None,
        hooks: Hooks | None = None,
        feedback: FeedbackJoin | None = None,
        tracing: Tracing = NO_TRACING,
        budget: ByteBudget | None = None,
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.routing: Routing = routing if routing is not None else DefaultRouting(models)
        self.hooks = hooks if hooks is not None else Hooks()
        self.feedback_join: FeedbackJoin = feedback if feedback is not None else NoFeedback()
        self.tracing = tracing
        self.budget = budget if budget is not None else ByteBudget(0, metrics)
        self.decoder = Decoder()
        self._unknown: dict[str, VersionStats] = {}

    # -- the request path ----------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> InferResponse:
        started = time.monotonic()
        route: Route | None = None
        with self.tracing.request(request):  # the hooks run inside: a tracing hook sees the span
            try:
                route = self.routing.route(request)
                mv = route.version
                rows = mv.check(request.inputs, request.outputs)
                with self.budget.hold(request_nbytes(request.inputs)):
                    arrays = await self.decoder.decode(request.inputs)
                    request.inputs = arrays  # what the hooks see of a request that ran
                    result = await mv.submit(arrays, rows, request.deadline, request.priority)
            except ServeError as e:
                self._finish(request, route, None, e, e.outcome, started)
                raise
            except asyncio.CancelledError:
                self._finish(request, route, None, None, CANCELLED, started)
                raise
            except Exception as e:
                error = InternalError(f"internal error: {type(e).__name__}: {e}")
                log.exception("request %s: internal error", quoted(request.request_id))
                self._finish(request, route, None, error, error.outcome, started)
                raise error from e
            outputs = result.outputs
            if request.outputs:
                outputs = {n: outputs[n] for n in request.outputs}
            response = InferResponse(
                request.model,
                mv.version,
                outputs,
                request.request_id,
                route.variant,
                result.queue_s,
                result.compute_s,
            )
            self._finish(request, route, response, None, OK, started)
            return response

    async def decode(self, inputs: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        """Tensors as arrays, for calls that are not inference (large ones in the decode thread)."""
        return await self.decoder.decode(inputs)

    async def feedback(self, items: Sequence[FeedbackItem]) -> list[FeedbackResult]:
        """Join ground truth to the predictions it is about (``ortserve.core.feedback``)."""
        return await self.feedback_join.feedback(items)

    def reject(self, request: InferRequest, error: ServeError, started: float) -> None:
        """Count a request that failed before it reached ``infer`` (e.g. while decoding)."""
        if not error.recorded:
            self._finish(request, None, None, error, error.outcome, started)

    def _finish(
        self,
        request: InferRequest,
        route: Route | None,
        response: InferResponse | None,
        error: ServeError | None,
        outcome: str,
        started: float,
    ) -> None:
        duration = time.monotonic() - started
        if response is not None and route is not None:
            route.version.stats.request(
                request.api, outcome, duration, response.queue_s, response.compute_s, route.variant
            )
        elif route is not None:
            route.version.stats.request(request.api, outcome, duration, variant=route.variant)
        else:
            self._stats_before_routing(request.model).request(request.api, outcome, duration)
        if error is not None:
            error.recorded = True
            if log.isEnabledFor(logging.DEBUG):
                rid = request.request_id
                log.debug(
                    "request %s failed: %s %s", quoted(rid), outcome, error, extra={"request_id": rid[:256]}
                )
        if self.hooks:
            self.hooks.emit(Completed(request, outcome, duration, route, response, error))

    def _stats_before_routing(self, model: str) -> VersionStats:
        """Requests that failed before routing are counted in one requests-only label set per
        model (labels never take unvalidated client strings: unknown models share ``_unknown``),
        so that a failure is never counted under a version it did not reach."""
        if not self.models.is_loaded(model):
            model = UNKNOWN_MODEL
        stats = self._unknown.get(model)
        if stats is None:
            stats = self._unknown[model] = self.metrics.version(model, "", loaded=False)
        return stats

    # -- questions about what is loaded ---------------------------------------------------------
    def list_models(self) -> list[ModelSummary]:
        """The models with at least one loaded version, by name."""
        return [self.model(name) for name in self.models.ready_models()]

    def model(self, name: str) -> ModelSummary:
        versions = self.models.loaded(name)
        if not versions:
            self.models.get(name)  # raises ModelNotFound with the loaded models named
        return ModelSummary(name, [mv.version for mv in versions], self.models.default_version(name))

    def version(self, model: str, version: str = "") -> ModelVersion:
        """The loaded version (the model's default when ``version`` is ""); raises ModelNotFound."""
        return self.models.get(model, version)

    def versions(self, model: str = "") -> list[ModelVersion]:
        """Every loaded version of ``model`` (of every model when ""), in order."""
        if model:
            found = self.models.loaded(model)
            if not found:
                raise ModelNotFound(self.models.not_loaded_message(model))
            return found
        return [mv for name in self.models.ready_models() for mv in self.models.loaded(name)]

    def is_ready(self, model: str, version: str = "") -> bool:
        try:
            self.models.get(model, version)
        except ServeError:
            return False
        return True

    def index(self) -> list[tuple[str, str, str, str]]:
        """Every version in the repository or loaded: (model, version, READY|UNAVAILABLE, reason)."""
        return self.models.index()

    async def model_card(self, model: str, version: str = "") -> tuple[str, str]:
        """(version, Markdown) of a loaded version's MODEL_CARD.md (the default version when ""), read off the
        event loop and checked against the version's manifest. ModelNotFound when it has none;
        FailedPrecondition when it no longer matches the manifest."""
        mv = self.models.get(model, version)
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(None, read_model_card, mv.path, mv.manifest)
        except (ManifestError, OSError) as e:
            raise FailedPrecondition(
                f"model {quoted(model)} version {mv.version}: model card refused: {e}"
            ) from None
        if text is None:
            raise ModelNotFound(
                f"model {quoted(model)} version {mv.version} has no {MODEL_CARD} (published without one: "
                "by hand, or before ortserve-optimize wrote model cards)"
            )
        return mv.version, text

    async def load(self, model: str) -> None:
        await self.models.load_model(model)

    async def unload(self, model: str) -> None:
        await self.models.unload_model(model)
