"""``ortserve.v1.Admin``: read and replace the routing flags, list the loaded versions."""

from __future__ import annotations

import grpc

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve._proto.ortserve.v1 import admin_pb2_grpc as pb_grpc
from ortserve.rollout.flags import SHADOW_SUFFIX, FlagsError
from ortserve.rollout.router import FlagSource

__all__ = ["AdminServicer", "add_to_server"]


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, source: FlagSource) -> None:
        self.source = source

    async def GetFlags(self, request: pb.GetFlagsRequest, context) -> pb.GetFlagsResponse:
        s = self.source
        return pb.GetFlagsResponse(
            flags_json=s.router.flags.text, path=str(s.path), revision=s.revision, last_error=s.last_error
        )

    async def SetFlags(
        self, request: pb.SetFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetFlagsResponse:
        try:
            await self.source.replace(request.flags_json)
        except FlagsError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"flags refused ({e.reason}): {e}")
        except OSError as e:
            await context.abort(grpc.StatusCode.INTERNAL, f"cannot write {self.source.path}: {e}")
        return pb.SetFlagsResponse(revision=self.source.revision)

    async def ListVersions(self, request: pb.ListVersionsRequest, context) -> pb.ListVersionsResponse:
        router = self.source.router
        flags = router.flags.flags
        out = pb.ListVersionsResponse()
        for name in router.models.ready_models():
            model = router.models.models[name]
            naming: dict[str, list[str]] = {}
            for key in (name, name + SHADOW_SUFFIX):
                flag = flags.get(key)
                for variant, version in flag.variants.items() if flag is not None else ():
                    naming.setdefault(str(version), []).append(f"{key}:{variant}")
            versions = [
                pb.VersionInfo(version=v, sha256=model.versions[v].sha256, variants=naming.get(v, []))
                for v in model.sorted_versions()
            ]
            out.models.append(
                pb.ModelVersions(model=name, versions=versions, default_version=model.default_version() or "")
            )
        return out


def add_to_server(source: FlagSource, server: grpc.aio.Server) -> str:
    pb_grpc.add_AdminServicer_to_server(AdminServicer(source), server)
    return pb.DESCRIPTOR.services_by_name["Admin"].full_name
