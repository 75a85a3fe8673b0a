"""The gRPC server: every service on one port, their handlers running the interceptor chain, reflection.

server, port = build_server(core, flags, health, address="127.0.0.1:0", links=[...], rollouts=controller)
await server.start()

``credentials`` (``ortserve.edge.tls``) binds the port with TLS instead of plaintext.
``build_health_server`` serves grpc.health.v1 alone, plaintext, for probes when the main port is TLS.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from ortserve._proto._pool import POOL
from ortserve.core import InferenceCore
from ortserve.edge import admin, v1, v2
from ortserve.edge.call import Edge
from ortserve.edge.health import Health
from ortserve.edge.interceptors import Interceptor, chained
from ortserve.rollout import FlagSource, RolloutController

__all__ = ["build_health_server", "build_server"]


def _reflection_pool():
    """Our descriptor pool, with the standard services (defined in protobuf's default pool) added,
    so that reflection describes every service on the port."""
    for module in (health_pb2, reflection_pb2):
        try:
            POOL.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            proto = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(proto)
            POOL.Add(proto)
    return POOL


def build_server(
    core: InferenceCore,
    flags: FlagSource,
    health: Health,
    *,
    address: str,
    max_message_size: int,
    workers: int = 1,
    links: Sequence[Interceptor] = (),
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    rollouts: RolloutController,
) -> tuple[grpc.aio.Server, int]:
    """A server with every service added and bound to ``address``; returns it and the bound port.
    ``interceptors`` run outside the chain of ``links`` (tracing's, so that its span covers them).
    Raises OSError when the address cannot be bound."""
    options = [
        ("grpc.max_receive_message_length", max_message_size),
        ("grpc.max_send_message_length", max_message_size),
        # gRPC enables SO_REUSEPORT by default: a second server would silently share the port.
        # (--workers N: every worker binds the same port on purpose.)
        ("grpc.so_reuseport", 1 if workers > 1 else 0),
    ]
    server = grpc.aio.server(options=options, interceptors=list(interceptors) or None)
    guarded = chained(server, links)  # every service's handlers run the chain
    edge = Edge(core)
    names = [
        v1.add_to_server(core, edge, guarded),
        admin.add_to_server(core, flags, edge, guarded, rollouts),
        v2.add_to_server(core, edge, guarded, workers=workers),
        health.add_to_server(guarded),
        reflection.SERVICE_NAME,
    ]
    # What reflection.enable_server_reflection adds for a grpc.aio server (it tells one by its class,
    # which ``guarded`` is not), added here so that reflection runs the chain like every service.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names, pool=_reflection_pool()), guarded
    )
    return server, _bind(server, address, credentials)


def build_health_server(health: Health, address: str, workers: int = 1) -> tuple[grpc.aio.Server, int]:
    """A plaintext server with only grpc.health.v1 (the same statuses as the main port)."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if workers > 1 else 0)])
    health.add_to_server(server)
    return server, _bind(server, address, None)


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as e:
        raise OSError(f"cannot bind gRPC server to {address}: {e}") from e
    if not port:
        raise OSError(f"cannot bind gRPC server to {address}")
    return port
