"""What the rollout tests share: a repository of 4-class classifiers (``tests.onnx_models.classifier``)
whose versions differ on purpose, the real server in process (``App``) with a quick controller, and a
traffic generator over real gRPC.

    version 1  the baseline: label = argmax(x)
    version 2  the same function (an equivalent candidate)
    version 3  fails (ONNX Runtime error) on requests whose x[0, 0] > 0.7: about 30% of the traffic
    version 4  answers argmax(x) + 1 mod 4: always wrong (feedback shows it)
    version 5  the same as 1 but fails on about 3% of requests (x[0, 0] > 0.97)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve._proto.ortserve.v1 import admin_pb2_grpc as pb_grpc
from ortserve.client import AsyncClient
from ortserve.ops.app import App
from ortserve.ops.settings import Settings
from tests import onnx_models as m
from tests.server.inprocess import run_in_app

CONFIG = 'default_version = "1"\nmax_batch_size = 8\n[batching]\nenabled = false\n'
QUICK = {"step_seconds": 0.3, "step_requests": 20, "idle_seconds": 30}


def make_repo(root: Path, versions: tuple[int, ...] = (1, 2, 3, 4)) -> Path:
    models = {
        1: m.classifier(),
        2: m.classifier(),
        3: m.classifier(fail_above=0.7),
        4: m.classifier(shift=1),
        5: m.classifier(fail_above=0.97),
    }
    for i, v in enumerate(versions):
        m.publish(root, "clf", v, models[v], CONFIG if i == 0 else None)
    return root


def settings(repo: Path, **kw: Any) -> Settings:
    base = Settings(
        model_repository=repo,
        port=0,
        metrics_port=-1,
        flags_poll_interval=0.2,
        rollout_interval=0.1,
        drift_sample_rate=0,
    )
    return dataclasses.replace(base, **kw)


def run_app(repo: Path, body: Callable[[App, str], Awaitable[None]], **kw: Any) -> None:
    """Start the real server in process, run ``body(app, target)``, stop it."""
    run_in_app(settings(repo, **kw), body)


def row(rng: random.Random) -> np.ndarray:
    return np.array([[rng.random() for _ in range(4)]], np.float32)


class Traffic:
    """Requests to ``clf`` with random targeting keys until stopped; remembers what served each."""

    def __init__(self, target: str, seed: int = 0, feedback: bool = False) -> None:
        self.target = target
        self.rng = random.Random(seed)
        self.feedback = feedback
        self.served: list[tuple[str, str]] = []  # (version, variant) of each request answered
        self.errors = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        async with AsyncClient(self.target) as client:
            while True:
                x = row(self.rng)
                try:
                    p = await client.predict("clf", {"x": x}, targeting_key=f"user-{self.rng.random()}")
                except grpc.aio.AioRpcError:
                    self.errors += 1
                    await asyncio.sleep(0)
                    continue
                self.served.append((p.version, p.variant))
                if self.feedback:
                    await client.feedback(p.request_id, labels=[int(x.argmax())])

    def __enter__(self) -> Traffic:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def admin(target: str) -> tuple[grpc.aio.Channel, pb_grpc.AdminStub]:
    channel = grpc.aio.insecure_channel(target)
    return channel, pb_grpc.AdminStub(channel)


async def wait_state(
    stub: pb_grpc.AdminStub, states: set[str], timeout: float = 60.0, model: str = "clf"
) -> pb.RolloutStatus:
    """Poll GetRollout until the rollout is in one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    status = None
    while loop.time() < deadline:
        status = await stub.GetRollout(pb.GetRolloutRequest(model=model))
        if status.state in states:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"rollout never reached {states}: {status}")


def spec(**kw: Any) -> str:
    """A rollout spec as TOML from keyword arguments (QUICK steps unless overridden)."""
    from ortserve.schema import toml_value

    table = {**QUICK, **kw}
    return "\n".join(f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)) + "".join(
        f"\n[{k}]\n" + "\n".join(f"{a} = {toml_value(b)}" for a, b in v.items())
        for k, v in table.items()
        if isinstance(v, dict)
    )
