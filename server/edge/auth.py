"""Authentication and authorization: the ``Auth`` link of the interceptor chain.

With an auth file, every RPC is denied unless the caller's roles grant its group
(``ortserve.edge.methods``): no or bad credentials get UNAUTHENTICATED, a caller whose roles do
not cover the RPC gets PERMISSION_DENIED, before anything is decoded; a stream is checked once.
Groups named in ``open_groups`` (health, reflection: by setting) need no credentials.

Model-scoped grants (``inference = ["fraud-*"]``) need the model name, which is in the request
message, not the metadata: ``enter`` decides from the group alone when the grant covers every
model, and otherwise leaves the model to ``inspect``, which the chain calls with each request
message (each message of a stream: every one names its own model). RPCs that name a model are
listed in ``MODEL_FIELD``; the server's own health and metadata (``SERVER_OPEN``) need any grant of
their group; the rest act on every model (ListModels, RepositoryIndex, flags) and need a grant on
all of them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from ortserve.edge.authfile import ALL
from ortserve.edge.interceptors import Interceptor, Rpc
from ortserve.edge.policy import AuthPolicy
from ortserve.edge.principals import Principal
from ortserve.errors import PermissionDenied, Unauthenticated
from ortserve.metrics import Metrics

__all__ = ["MODEL_FIELD", "SERVER_OPEN", "Auth", "AuthPolicy", "CallAuth", "current_call"]

_V1, _V2 = "/ortserve.v1.Inference/", "/inference.GRPCInferenceService/"
_ADMIN = "/ortserve.v1.Admin/"
MODEL_FIELD: dict[str, str] = {
    **{_ADMIN + m: "model" for m in ("StartRollout", "GetRollout", "AbortRollout", "GetRolloutReport")},
    _V1 + "Predict": "model",
    _V1 + "ModelMetadata": "model",
    "/ortserve.v1.Admin/GetModelCard": "model",
    **{_V2 + m: "model_name" for m in ("ModelInfer", "ModelStreamInfer")},
    **{_V2 + m: "model_name" for m in ("RepositoryModelLoad", "RepositoryModelUnload")},
    **{_V2 + m: "name" for m in ("ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics")},
}
SERVER_OPEN = frozenset(_V2 + m for m in ("ServerLive", "ServerReady", "ServerMetadata"))
_ANONYMOUS = "anonymous"


@dataclass(slots=True)
class CallAuth:
    """What the Auth link decided for the current call (a context variable: the audit reads it)."""

    principal: Principal | None
    patterns: tuple[str, ...] | None = None  # set: the model each request names must match one
    model: str = ""  # the last model a request of this call named

    @property
    def name(self) -> str:
        return self.principal.name if self.principal is not None else _ANONYMOUS


_CALL: contextvars.ContextVar[CallAuth | None] = contextvars.ContextVar("ortserve_call_auth", default=None)


def current_call() -> CallAuth | None:
    return _CALL.get()


class Auth(Interceptor):
    """The chain link. ``open_groups``: groups answered without credentials (health, reflection)."""

    def __init__(
        self, policy: AuthPolicy, open_groups: Iterable[str] = (), metrics: Metrics | None = None
    ) -> None:
        self.policy = policy
        self.open_groups = frozenset(open_groups)
        self._metrics = metrics

    def _deny(self, group: str, error: Exception) -> Exception:
        if self._metrics is not None:
            reason = "unauthenticated" if isinstance(error, Unauthenticated) else "permission_denied"
            self._metrics.auth_denied.labels(group or "unknown", reason).inc()
        return error

    async def enter(self, rpc: Rpc, context: grpc.aio.ServicerContext) -> None:
        state = CallAuth(None)
        _CALL.set(state)
        if rpc.group in self.open_groups:
            return
        auth = self.policy.authenticator
        try:
            principal = auth.from_metadata(context.invocation_metadata())
            if principal is None:
                principal = auth.from_certificate(context.auth_context())
        except Unauthenticated as e:
            raise self._deny(rpc.group, e) from None
        if principal is None:
            raise self._deny(
                rpc.group,
                Unauthenticated(
                    "no credentials: send 'authorization: Bearer <API key or JWT>' or 'x-api-key: <key>' "
                    "metadata, or a client certificate"
                ),
            )
        state.principal = principal
        scope = principal.grants.scope(rpc.group)
        if scope is None:
            raise self._deny(rpc.group, PermissionDenied(self._refusal(principal, rpc)))
        if scope is ALL or rpc.method in SERVER_OPEN or rpc.group in ("health", "reflection"):
            return
        if rpc.method in MODEL_FIELD:
            state.patterns = scope
            return
        raise self._deny(
            rpc.group,
            PermissionDenied(
                f"{principal.name} may call {rpc.method} only on models matching "
                f"{', '.join(scope)}, and this RPC acts on every model: it needs a grant on all models"
            ),
        )

    def inspect(self, rpc: Rpc, context: grpc.aio.ServicerContext, request: Any) -> None:
        state = _CALL.get()
        field = MODEL_FIELD.get(rpc.method)
        if state is None or field is None:
            return
        model = getattr(request, field, "")
        state.model = model
        if state.patterns is None or state.principal is None:
            return
        if not state.principal.grants.allows_model(rpc.group, model):
            raise self._deny(
                rpc.group,
                PermissionDenied(
                    f"{state.principal.name} may not call {rpc.method.rsplit('/', 1)[-1]} on model {model!r}: "
                    f"its roles allow only models matching {', '.join(state.patterns)}"
                ),
            )

    @staticmethod
    def _refusal(principal: Principal, rpc: Rpc) -> str:
        roles = ", ".join(principal.roles) or "none"
        return (
            f"{principal.name} (roles: {roles}) may not call {rpc.method}: "
            f"no role grants the {rpc.group!r} group"
        )
