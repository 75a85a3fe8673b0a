"""The routing seam: which loaded version serves a request.

The core asks its ``Routing`` strategy for a ``Route``. ``DefaultRouting`` (the null object) serves
the version the request names, else the model's default version; ``ortserve.rollout`` provides
the flag-driven strategy (canary splits, sticky targeting, shadow traffic).
"""

from __future__ import annotations

from typing import Protocol

from ortserve.core.models import ModelManager
from ortserve.core.request import InferRequest, Route

__all__ = ["DefaultRouting", "Routing"]


class Routing(Protocol):
    def route(self, request: InferRequest) -> Route:
        """The route of one request; raises ModelNotFound or InvalidInput."""
        ...


class DefaultRouting:
    """No flags: the requested version, else the model's default version."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models

    def route(self, request: InferRequest) -> Route:
        return Route(self.models.get(request.model, request.version))
