"""The floor of a Python gRPC server on this machine: grpc.aio on uvloop answering ``ortserve.v1``
Predict with a fixed response (the request parsed, its tensor viewed, nothing run). No server
written on grpc.aio can cost less per request; bench_peers puts its CPU per request beside
ortserve's, so what ortserve adds over gRPC itself can be read off one table.

    python -m benchmarks.peers.floor            # prints "ready <port>", serves until SIGTERM
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["FloorServer"]

ROOT = Path(__file__).resolve().parents[2]


async def _serve() -> None:
    import grpc
    import numpy as np

    from ortserve._proto.ortserve.v1 import inference_pb2 as pb
    from ortserve._proto.ortserve.v1 import inference_pb2_grpc as pb_grpc

    answer = [pb.Tensor(name="probabilities", dtype="float32", shape=[1, 10], data=bytes(40))]

    class Floor(pb_grpc.InferenceServicer):
        async def Predict(self, request: Any, context: Any) -> Any:
            np.frombuffer(request.inputs[0].data, np.float32)
            return pb.PredictResponse(model=request.model, version="1", outputs=answer)

    server = grpc.aio.server()
    pb_grpc.add_InferenceServicer_to_server(Floor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready {port}", flush=True)
    await stop.wait()
    await server.stop(0)


class FloorServer:
    """The floor server in a subprocess (``target``, ``proc`` like ortserve.testing.ServerProcess)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers.floor"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            self.proc.kill()
            raise RuntimeError("the floor server did not start")
        self.target = f"127.0.0.1:{line[1]}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_serve())
