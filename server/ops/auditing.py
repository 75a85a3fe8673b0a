"""What goes into the audit log: the ``Audit`` link of the interceptor chain.

Every control-plane call (``CONTROL``: SetFlags, StartRollout, AbortRollout, V2 repository load and
unload), allowed or not, and every call refused as UNAUTHENTICATED or PERMISSION_DENIED, becomes one
record::

    {"time": "...Z", "event": "rpc", "pid": 4242, "method": "/ortserve.v1.Admin/SetFlags",
     "group": "flags", "principal": "key:ci-bot", "peer": "ipv4:10.0.0.7:51234", "model": "",
     "version": "", "variant": "", "decision": "allow", "status": "OK", "request_id": "...", "message": "",
     "flags_sha256_old": "...", "flags_sha256_new": "...", "flags_changed": ["digits"], "prev": "...", "hash": "..."}

The link only looks at control methods and failures, so an allowed inference call costs a set
lookup. Rollout transitions (``event: rollout``, from the controller, with who or what acted, why and
the figures) and key changes are recorded through ``AuditLog.record`` by their owners.

``version`` is the version the call names (a StartRollout's candidate, a refused Predict's or
ModelInfer's version; empty when it names none), ``variant`` the flag variant the caller asked for
(the ``x-variant`` header; a refused call was never routed to one).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
from collections.abc import Callable
from typing import Any

import grpc

from ortserve.edge.auth import MODEL_FIELD, current_call
from ortserve.edge.call import new_request_id
from ortserve.edge.interceptors import Interceptor, Rpc, unary_request
from ortserve.edge.status import status_for
from ortserve.errors import PermissionDenied, ServeError, Unauthenticated
from ortserve.ops.audit import AuditLog

__all__ = ["CONTROL", "Audit"]

_ADMIN, _V2 = "/ortserve.v1.Admin/", "/inference.GRPCInferenceService/"
CONTROL = frozenset(
    {
        _ADMIN + "SetFlags",
        _ADMIN + "StartRollout",
        _ADMIN + "AbortRollout",
        _V2 + "RepositoryModelLoad",
        _V2 + "RepositoryModelUnload",
    }
)
_DENIED = (Unauthenticated, PermissionDenied)
_HEADERS = frozenset({"x-request-id", "x-variant"})

_DETAILS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ortserve_audit_details", default=None
)


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def changed_flags(old: str, new: str) -> list[str] | None:
    """The flag keys whose definitions differ between two flags documents (None: one is not JSON)."""
    try:
        a, b = json.loads(old or "{}").get("flags", {}), json.loads(new or "{}").get("flags", {})
    except (ValueError, AttributeError):
        return None
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _status(error: BaseException | None, context: grpc.aio.ServicerContext) -> str:
    if error is None:
        return "OK"
    if isinstance(error, ServeError):
        return status_for(error).name
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


class Audit(Interceptor):
    """``flags_text``: the flags document now in force (SetFlags records its sha256 before and after)."""

    def __init__(self, log: AuditLog, flags_text: Callable[[], str]) -> None:
        self.log = log
        self._flags_text = flags_text

    def inspect(self, rpc: Rpc, context: grpc.aio.ServicerContext, request: Any) -> None:
        if rpc.method not in CONTROL:
            return
        if rpc.method.endswith("/SetFlags"):
            old, new = self._flags_text(), request.flags_json
            details = {
                "flags_sha256_old": sha256_text(old),
                "flags_sha256_new": sha256_text(new),
                "flags_changed": changed_flags(old, new),
            }
        elif rpc.method.endswith("Rollout"):
            details = {"model": request.model, "reason": request.reason}
            if rpc.method.endswith("/StartRollout"):
                details["candidate"] = request.candidate
        else:
            details = {"model": request.model_name}
        _DETAILS.set(details)

    def leave(self, rpc: Rpc, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        denied = isinstance(error, _DENIED)
        if rpc.method not in CONTROL and not denied:
            return
        details = _DETAILS.get() if rpc.method in CONTROL else None
        _DETAILS.set(None)
        call = current_call()
        model = call.model if call is not None else ""
        if not model and rpc.method in MODEL_FIELD:  # refused before the message was inspected
            model = getattr(unary_request(), MODEL_FIELD[rpc.method], "")
        metadata = {k: v for k, v in context.invocation_metadata() or () if k in _HEADERS}
        request = unary_request()
        version = getattr(request, "version", "") or getattr(request, "model_version", "")
        if rpc.method.endswith("/StartRollout"):
            version = (details or {}).get("candidate", "") or getattr(request, "candidate", "")
        fields = {
            "method": rpc.method,
            "group": rpc.group,
            "principal": call.name if call is not None else "anonymous",
            "peer": context.peer(),
            "model": model,
            "version": str(version),
            "variant": metadata.get("x-variant", ""),
            "decision": "deny" if denied else "allow",
            "status": _status(error, context),
            "message": str(error) if isinstance(error, ServeError) else (context.details() or ""),
            "request_id": metadata.get("x-request-id") or new_request_id(),
        }
        self.log.record("rpc", **{**fields, **(details or {})})
