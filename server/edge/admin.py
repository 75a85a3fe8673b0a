"""``ortserve.v1.Admin``: read and replace the routing flags, list the loaded versions, read a version's
model card, run rollouts (start, look, abort, report) through the ``RolloutController``."""

from __future__ import annotations

import json
from typing import Any

import grpc

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve._proto.ortserve.v1 import admin_pb2_grpc as pb_grpc
from ortserve.core import InferenceCore
from ortserve.edge.auth import current_call
from ortserve.edge.call import Edge
from ortserve.errors import FlagsError, InternalError, InvalidInput, quoted
from ortserve.repository.layout import check_model_name
from ortserve.rollout import SHADOW_SUFFIX, FlagSource, RolloutController, build_report, parse_spec

__all__ = ["AdminServicer", "add_to_server"]

API = "admin"


def _status(record: dict[str, Any]) -> pb.RolloutStatus:
    return pb.RolloutStatus(
        model=record["model"],
        id=record["id"],
        baseline=record["baseline"],
        candidate=record["candidate"],
        state=record["state"],
        reason=record["reason"],
        phase=record["phase"],
        step=record["step"],
        steps=record["steps"],
        weight=record["weight"],
        needed=record["needed"],
        e_value=record["e_value"],
        threshold=record["threshold"],
        started=record["started_at"],
        updated=record.get("updated_at", ""),
        started_by=record["started_by"],
        record_json=json.dumps(record, separators=(",", ":")),
    )


def _caller(context: grpc.aio.ServicerContext) -> str:
    """Who is asking, for the audit: the principal, or the peer when there is no auth file."""
    call = current_call()
    return call.name if call is not None else f"anonymous ({context.peer()})"


def _model(name: str) -> str:
    """A request's model name, checked as the name of a model folder (it names the rollout's files)."""
    if not name:
        raise InvalidInput("model: expected the name of a model")
    try:
        if len(name.encode()) > 255:
            raise ValueError("longer than a file name")
        return check_model_name(name)
    except ValueError:
        raise InvalidInput(
            f"model {quoted(name)}: not a model name (a plain folder name such as 'digits')"
        ) from None


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(
        self, core: InferenceCore, flags: FlagSource, edge: Edge, rollouts: RolloutController
    ) -> None:
        self.core = core
        self.flags = flags
        self.edge = edge
        self.rollouts = rollouts

    async def GetFlags(self, request: pb.GetFlagsRequest, context) -> pb.GetFlagsResponse:
        s = self.flags
        return pb.GetFlagsResponse(
            flags_json=s.flags.text, path=str(s.path), revision=s.revision, last_error=s.last_error
        )

    async def SetFlags(
        self, request: pb.SetFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetFlagsResponse:
        async with self.edge.call(context, API):
            try:
                await self.flags.replace(request.flags_json)
            except FlagsError as e:
                raise FlagsError(e.reason, f"flags refused ({e.reason}): {e}") from None
            except OSError as e:
                raise InternalError(f"cannot write {self.flags.path}: {e}") from e
            return pb.SetFlagsResponse(revision=self.flags.revision)

    async def ListVersions(self, request: pb.ListVersionsRequest, context) -> pb.ListVersionsResponse:
        async with self.edge.call(context, API):
            flags = self.flags.flags.flags
            out = pb.ListVersionsResponse()
            for model in self.core.list_models():
                naming: dict[str, list[str]] = {}
                for key in (model.name, model.name + SHADOW_SUFFIX):
                    flag = flags.get(key)
                    for variant, version in flag.variants.items() if flag is not None else ():
                        naming.setdefault(str(version), []).append(f"{key}:{variant}")
                versions = [
                    pb.VersionInfo(version=mv.version, sha256=mv.sha256, variants=naming.get(mv.version, []))
                    for mv in self.core.versions(model.name)
                ]
                out.models.append(
                    pb.ModelVersions(
                        model=model.name, versions=versions, default_version=model.default_version
                    )
                )
            return out

    async def StartRollout(
        self, request: pb.StartRolloutRequest, context: grpc.aio.ServicerContext
    ) -> pb.RolloutStatus:
        async with self.edge.call(context, API):
            given = {
                "model": _model(request.model),
                "candidate": request.candidate,
                "baseline": request.baseline,
            }
            spec = parse_spec(request.spec, given)
            return _status(await self.rollouts.start(spec, _caller(context), request.reason))

    async def GetRollout(
        self, request: pb.GetRolloutRequest, context: grpc.aio.ServicerContext
    ) -> pb.RolloutStatus:
        async with self.edge.call(context, API):
            return _status(await self.rollouts.get(_model(request.model)))

    async def AbortRollout(
        self, request: pb.AbortRolloutRequest, context: grpc.aio.ServicerContext
    ) -> pb.RolloutStatus:
        async with self.edge.call(context, API):
            record = await self.rollouts.abort(_model(request.model), _caller(context), request.reason)
            return _status(record)

    async def GetRolloutReport(
        self, request: pb.GetRolloutReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.RolloutReport:
        async with self.edge.call(context, API):
            report = build_report(await self.rollouts.get(_model(request.model)))
            return pb.RolloutReport(report_json=json.dumps(report, separators=(",", ":")))

    async def GetModelCard(
        self, request: pb.GetModelCardRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelCardResponse:
        async with self.edge.call(context, API):
            version, markdown = await self.core.model_card(request.model, request.version)
            return pb.GetModelCardResponse(model=request.model, version=version, markdown=markdown)


def add_to_server(
    core: InferenceCore, flags: FlagSource, edge: Edge, server: grpc.aio.Server, rollouts: RolloutController
) -> str:
    pb_grpc.add_AdminServicer_to_server(AdminServicer(core, flags, edge, rollouts), server)
    return pb.DESCRIPTOR.services_by_name["Admin"].full_name
