"""Health checks every 10 ms against a server, in a process of its own (so that what the chaos
driver does in its own process is not measured): ``python -m benchmarks.chaos.probe TARGET``.
It probes until its stdin closes, then prints one JSON list of [sent, answered, status] with
times on the system's monotonic clock (the same in every process)."""

from __future__ import annotations

import json
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PERIOD_S = 0.01


def main() -> None:
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(sys.argv[1]))
    probes: list[tuple[float, float, str]] = []
    print("ready", flush=True)
    while not done.is_set():
        sent = time.monotonic()
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as e:
            status = e.code().name
        probes.append((sent, time.monotonic(), status))
        done.wait(PERIOD_S)
    print(json.dumps(probes), flush=True)


if __name__ == "__main__":
    main()
