"""``ortserve.v1.Admin``: read and replace the routing flags, list the loaded versions."""

from __future__ import annotations

import grpc

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve._proto.ortserve.v1 import admin_pb2_grpc as pb_grpc
from ortserve.core import InferenceCore
from ortserve.edge.call import Edge
from ortserve.errors import FlagsError, InternalError
from ortserve.rollout import SHADOW_SUFFIX, FlagSource

__all__ = ["AdminServicer", "add_to_server"]

API = "admin"


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, core: InferenceCore, flags: FlagSource, edge: Edge) -> None:
        self.core = core
        self.flags = flags
        self.edge = edge

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


def add_to_server(core: InferenceCore, flags: FlagSource, edge: Edge, server: grpc.aio.Server) -> str:
    pb_grpc.add_AdminServicer_to_server(AdminServicer(core, flags, edge), server)
    return pb.DESCRIPTOR.services_by_name["Admin"].full_name
