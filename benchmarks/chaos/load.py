"""The chaos suite's client side: paced load whose every request is accounted for, and the
health probe (a process of its own, ``benchmarks.chaos.probe``) read back.

    tally = Tally()
    stop = asyncio.Event()
    task = asyncio.ensure_future(paced(target, 200, stop, one_row, tally))
    ...; stop.set(); await task       # every request sent has ended by then
    tally.lost                        # CANCELLED by the server, dropped in flight, no answer
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

__all__ = ["DEADLINE_S", "Probe", "Tally", "classify", "paced"]

DEADLINE_S = 30.0  # the client's deadline: a request not answered by then was never answered
ROOT = Path(__file__).resolve().parents[2]

LOST = ("lost: CANCELLED", "lost: connection dropped", "lost: no answer")


def classify(error: BaseException | None) -> str:
    """The outcome of one request, from the client's side."""
    if error is None:
        return "OK"
    if not isinstance(error, grpc.aio.AioRpcError | grpc.RpcError):
        return f"client error: {type(error).__name__}"
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.CANCELLED:
        return "lost: CANCELLED"  # the client cancels nothing: the server did
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "lost: no answer"
    if code == grpc.StatusCode.UNAVAILABLE:
        if "shutting down" in details:
            return "UNAVAILABLE (drain)"
        # What the channel's load balancing refused to send: no connection (pick_first says
        # "failed to connect", round_robin "connections to all backends failing"), or, with
        # client-side health checking, no server SERVING.
        if "backend unhealthy" in details:
            return "UNAVAILABLE (not sent: NOT_SERVING)"
        if any(
            s in details
            for s in ("failed to connect", "Connection refused", "connections to all backends failing")
        ):
            return "UNAVAILABLE (not connected)"
        return "lost: connection dropped"
    return code.name


@dataclass
class Tally:
    """The outcomes of the requests of one scenario."""

    outcomes: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # one error message per outcome

    def add(self, error: BaseException | None) -> None:
        outcome = classify(error)
        self.outcomes[outcome] += 1
        if error is not None and outcome not in self.examples:
            details = (
                error.details() if isinstance(error, grpc.aio.AioRpcError | grpc.RpcError) else str(error)
            )
            self.examples[outcome] = (details or "")[:160]

    async def call(self, call: Awaitable[Any]) -> None:
        try:
            await call
        except Exception as e:
            self.add(e)
        else:
            self.add(None)

    def merge(self, other: Tally) -> None:
        self.outcomes.update(other.outcomes)
        for k, v in other.examples.items():
            self.examples.setdefault(k, v)

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def lost(self) -> int:
        return sum(self.outcomes[k] for k in LOST)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "lost": self.lost,
            "outcomes": dict(self.outcomes),
            "examples": self.examples,
        }


async def paced(
    target: str,
    rate: float,
    stop: asyncio.Event,
    request: Callable[[Any], Awaitable[Any]],
    tally: Tally,
    health_check: bool = False,
) -> None:
    """``rate`` requests a second (each ``request(client)``) until ``stop`` is set; returns once
    every request sent has ended. ``health_check``: the client's channel watches the server's
    health and sends nothing once it is NOT_SERVING (``AsyncClient(health_check=True)``)."""
    from ortserve.client import AsyncClient

    loop = asyncio.get_running_loop()
    running: set[asyncio.Task] = set()
    async with AsyncClient(target, health_check=health_check) as client:
        next_at = loop.time()
        while not stop.is_set():
            task = asyncio.ensure_future(tally.call(request(client)))
            running.add(task)
            task.add_done_callback(running.discard)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if running:
            await asyncio.wait(set(running))


class Probe:
    """The health probe process; ``stop()`` returns its probes: (sent, answered, status)."""

    def __init__(self, target: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.chaos.probe", target],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the health probe did not start")

    def stop(self) -> list[tuple[float, float, str]]:
        out, _ = self._proc.communicate("", timeout=60)
        return [tuple(p) for p in json.loads(out.strip().splitlines()[-1])]


def longest_stall(probes: list[tuple[float, float, str]], start: float, end: float) -> float:
    """The longest a health check waited for its answer, in ms, over the checks answered or sent
    between ``start`` and ``end`` (a check is sent every 10 ms)."""
    waits = [answered - sent for sent, answered, _ in probes if answered >= start and sent <= end]
    return max(waits, default=0.0) * 1000
