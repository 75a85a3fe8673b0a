"""``grpc.health.v1.Health``: "" is the whole server; each model's name is SERVING while it has
at least one loaded version."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

__all__ = ["Health"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    def __init__(self) -> None:
        self.servicer = HealthServicer()
        self._pending: set[asyncio.Task] = set()

    def add_to_server(self, server: grpc.aio.Server) -> str:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        return health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

    async def set(self, service: str, serving: bool) -> None:
        await self.servicer.set(service, SERVING if serving else NOT_SERVING)

    def model_changed(self, model: str, serving: bool) -> None:
        """Synchronous hook for the model manager (runs on the event loop)."""
        task = asyncio.get_running_loop().create_task(self.set(model, serving))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def shutdown(self) -> None:
        await self.servicer.enter_graceful_shutdown()
