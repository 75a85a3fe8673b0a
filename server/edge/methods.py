"""Every RPC the server answers, by group (named after Triton's protocol groups). The groups are
what access rules name; the table is checked against the services at start-up, so a new RPC
cannot go without a group.

    inference         Predict, Feedback, ModelInfer (also feedback to ortserve.feedback), ModelStreamInfer
    metadata          ListModels, ModelMetadata, ServerMetadata, ModelConfig, ModelStatistics,
                      ServerLive, ServerReady, ModelReady, GetRollout, GetRolloutReport, GetModelCard
    model-repository  RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload
    flags             GetFlags, SetFlags, ListVersions, StartRollout, AbortRollout (they move traffic)
    admin             shared memory, trace and log settings (answered UNIMPLEMENTED)
    health            grpc.health.v1.Health
    reflection        server reflection
    metrics           not an RPC: the metrics port's HTTP paths (/metrics, the status page), checked by
                      ortserve.ops.metrics_auth against the same principals
"""

from __future__ import annotations

__all__ = ["GROUPS", "group_of"]

_V1 = "/ortserve.v1.Inference/"
_ADMIN = "/ortserve.v1.Admin/"
_V2 = "/inference.GRPCInferenceService/"

GROUPS: dict[str, str] = {
    **{_V1 + m: "inference" for m in ("Predict", "Feedback")},
    **{_V1 + m: "metadata" for m in ("ListModels", "ModelMetadata")},
    **{_ADMIN + m: "flags" for m in ("GetFlags", "SetFlags", "ListVersions", "StartRollout", "AbortRollout")},
    **{_ADMIN + m: "metadata" for m in ("GetRollout", "GetRolloutReport", "GetModelCard")},
    **{_V2 + m: "inference" for m in ("ModelInfer", "ModelStreamInfer")},
    **{
        _V2 + m: "metadata"
        for m in (
            "ServerLive",
            "ServerReady",
            "ModelReady",
            "ServerMetadata",
            "ModelMetadata",
            "ModelConfig",
            "ModelStatistics",
        )
    },
    **{
        _V2 + m: "model-repository"
        for m in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
    },
    **{
        _V2 + m: "admin"
        for m in (
            "SystemSharedMemoryStatus",
            "SystemSharedMemoryRegister",
            "SystemSharedMemoryUnregister",
            "CudaSharedMemoryStatus",
            "CudaSharedMemoryRegister",
            "CudaSharedMemoryUnregister",
            "TraceSetting",
            "LogSettings",
        )
    },
}

_PREFIXES = {
    "/grpc.health.v1.Health/": "health",
    "/grpc.reflection.v1alpha.ServerReflection/": "reflection",
    "/grpc.reflection.v1.ServerReflection/": "reflection",
}


def group_of(method: str) -> str:
    """The group of a full method name (``/package.Service/Method``); "" for one not served."""
    group = GROUPS.get(method)
    if group is not None:
        return group
    for prefix, name in _PREFIXES.items():
        if method.startswith(prefix):
            return name
    return ""
