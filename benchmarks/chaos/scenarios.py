"""The chaos scenarios (see ``benchmarks.chaos``). Each starts its own server on loopback over a
fresh repository holding the digits model, runs paced load with the health probe, does its damage
and returns an ``Outcome``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.chaos.load import DEADLINE_S, Probe, Tally, longest_stall, paced
from benchmarks.common import DIGITS, DIGITS_CONFIG, digits_stand_in, publish
from benchmarks.overload import RssSampler, process_tree_rss

__all__ = ["Config", "Outcome", "flags_churn", "hostile", "kill_workers", "sigterm", "version_churn"]

ONE = DIGITS.inputs(1)
ROWS64 = DIGITS.inputs(64)
_MB = 1 << 20


@dataclass(frozen=True)
class Config:
    rate: float = 200.0  # paced requests per second
    sigterm_runs: int = 3  # per process layout
    kills: int = 4
    kill_every_s: float = 2.5
    churn_s: float = 8.0
    storm_rounds: int = 3
    big_mb: int = 64
    settle_s: float = 3.0  # before the storm, and after it before RSS is read again

    @classmethod
    def smoke(cls) -> Config:
        return cls(100.0, 1, 1, 1.0, 1.5, 1, 16, 1.0)


@dataclass
class Outcome:
    scenario: str
    what: str
    load: Tally
    stall_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    hostile: Tally | None = None
    rss_mib: tuple[float, float, float] | None = None  # before, peak, after

    def to_dict(self) -> dict[str, Any]:
        out = {
            "scenario": self.scenario,
            "what": self.what,
            "load": self.load.to_dict(),
            "stall_ms": self.stall_ms,
        }
        out.update(extra=self.extra, rss_mib=self.rss_mib)
        if self.hostile is not None:
            out["hostile"] = self.hostile.to_dict()
        return out


def _start(repo: Path, *args: str):
    from ortserve.testing import ServerProcess

    return ServerProcess(repo, *args, ready_timeout=120)


# The demo's config.toml, but the default version is the highest loaded (version churn removes 1)
CONFIG = "\n".join(line for line in DIGITS_CONFIG.splitlines() if not line.startswith("default_version"))


def _repo(root: Path, versions: int = 1) -> Path:
    model = digits_stand_in()
    for v in range(1, versions + 1):
        publish(root, "digits", v, model, CONFIG)
    return root


def _one_row(client) -> Any:
    return client.predict("digits", ONE, timeout=DEADLINE_S)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def sigterm(cfg: Config, workers: int, health_check: bool) -> Outcome:
    """SIGTERM 2 ms after a burst of 48 concurrent 64-row requests, under paced load; the clients
    watch the server's health (``health_check``, gRPC client-side health checking) or not."""
    from ortserve.client import AsyncClient

    load, stalls, codes = Tally(), [], []
    for _ in range(cfg.sigterm_runs):
        with tempfile.TemporaryDirectory() as d:
            server = _start(_repo(Path(d)), "--workers", str(workers), "--grace-period", "20")
            probe = Probe(server.target)
            stop = asyncio.Event()
            task = asyncio.ensure_future(paced(server.target, cfg.rate, stop, _one_row, load, health_check))
            async with AsyncClient(server.target, health_check=health_check) as c:
                await c.predict("digits", ONE, timeout=DEADLINE_S)  # connected (and SERVING) before the burst
                await asyncio.sleep(cfg.settle_s)  # a server that has served a while
                start = time.monotonic()
                burst = [
                    asyncio.ensure_future(load.call(c.predict("digits", ROWS64, timeout=DEADLINE_S)))
                    for _ in range(48)
                ]
                await asyncio.sleep(0.002)
                server.proc.send_signal(signal.SIGTERM)
                await asyncio.gather(*burst)
            codes.append(await asyncio.to_thread(server.proc.wait, 60))
            stop.set()
            await task
            stalls.append(longest_stall(probe.stop(), start - cfg.settle_s, time.monotonic()))
    layout = f"--workers {workers}" if workers > 1 else "one process"
    clients = "clients watch health" if health_check else "clients ignore health"
    what = (
        f"{cfg.sigterm_runs} runs ({layout}, {clients}): SIGTERM 2 ms after a burst of 48 x 64 rows, "
        f"{cfg.rate:.0f} req/s"
    )
    return Outcome(f"sigterm ({layout}, {clients})", what, load, max(stalls), {"exit codes": codes})


async def kill_workers(cfg: Config) -> Outcome:
    """kill -9 of a worker every few seconds under --workers 2."""
    with tempfile.TemporaryDirectory() as d:
        server = _start(_repo(Path(d)), "--workers", "2", "--worker-max-restarts", str(cfg.kills + 2))
        probe, load, stop = Probe(server.target), Tally(), asyncio.Event()
        task = asyncio.ensure_future(paced(server.target, cfg.rate, stop, _one_row, load))
        start = time.monotonic()
        killed = []
        for i in range(cfg.kills):
            await asyncio.sleep(cfg.kill_every_s)
            pids = _children(server.proc.pid)
            if pids:
                os.kill(pids[i % len(pids)], signal.SIGKILL)
                killed.append(pids[i % len(pids)])
        await asyncio.sleep(cfg.kill_every_s)
        stop.set()
        await task
        stall = longest_stall(probe.stop(), start, time.monotonic())
        alive = server.proc.poll() is None
        restarts = _metric(server.metrics_url, "ortserve_worker_restarts_total")
        code = await asyncio.to_thread(server.stop)
    what = f"--workers 2, kill -9 of a worker every {cfg.kill_every_s:.0f} s ({len(killed)} kills), {cfg.rate:.0f} req/s"
    extra = {"supervisor alive": alive, "restarts": restarts, "exit code": code}
    return Outcome("kill -9 workers", what, load, stall, extra)


def _metric(url: str, name: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def version_churn(cfg: Config) -> Outcome:
    """A version published and the oldest removed every second; requests name no version."""
    with tempfile.TemporaryDirectory() as d:
        repo = _repo(Path(d))
        server = _start(repo, "--poll-interval", "0.2")
        probe, load, stop = Probe(server.target), Tally(), asyncio.Event()
        task = asyncio.ensure_future(paced(server.target, cfg.rate, stop, _one_row, load))
        start, model, version = time.monotonic(), digits_stand_in(), 1
        while time.monotonic() - start < cfg.churn_s:
            await asyncio.sleep(1.0)
            version += 1
            await asyncio.to_thread(publish, repo, "digits", version, model)
            if version > 2:  # out of the repository in one rename, then deleted
                gone = repo / "digits" / f".gone-{version - 2}"
                os.replace(repo / "digits" / str(version - 2), gone)
        await asyncio.sleep(1.0)
        stop.set()
        await task
        stall = longest_stall(probe.stop(), start, time.monotonic())
        code = await asyncio.to_thread(server.stop)
    what = f"{version - 1} versions published and as many removed, one a second, {cfg.rate:.0f} req/s"
    return Outcome("version churn", what, load, stall, {"exit code": code})


def _flag_docs() -> list[str]:
    def doc(weights: tuple[int, int], **more: Any) -> str:
        flag = {"state": "ENABLED", "defaultVariant": "a", "variants": {"a": "1", "b": "2"}}
        flag["targeting"] = {"fractional": [["a", weights[0]], ["b", weights[1]]]}
        flag.update(more)
        return json.dumps({"flags": {"digits": flag}})

    deep: Any = "a"
    for _ in range(400):
        deep = {"cat": [deep]}
    invalid = [
        "{not json",
        doc((50, 50), targeting=deep),
        doc((50, 50), variants={f"v{i}": "1" for i in range(1000)} | {"a": "1"}),
        doc((50, 50), targeting={"nope": [1]}),
        doc((50, 50)) + " " * (2 * _MB),
        doc((60, 60)),
        doc((50, 50), variants={"a": "1", "b": "9"}),
    ]
    valid = [doc((100 - w, w)) for w in (10, 50, 90, 0)]
    return [d for pair in zip(valid * 2, invalid) for d in pair]


async def flags_churn(cfg: Config) -> Outcome:
    """The flags document replaced through the Admin API every 0.2 s, every other one invalid."""
    from ortserve._proto.ortserve.v1 import admin_pb2, admin_pb2_grpc

    with tempfile.TemporaryDirectory() as d:
        server = _start(_repo(Path(d), versions=2), "--flags-poll-interval", "0")
        probe, load, stop = Probe(server.target), Tally(), asyncio.Event()
        keys = iter(range(10**9))

        def keyed(client) -> Any:
            return client.predict("digits", ONE, targeting_key=f"user-{next(keys)}", timeout=DEADLINE_S)

        task = asyncio.ensure_future(paced(server.target, cfg.rate, stop, keyed, load))
        start, docs, taken, refused = time.monotonic(), _flag_docs(), 0, 0
        async with grpc.aio.insecure_channel(server.target) as ch:
            admin = admin_pb2_grpc.AdminStub(ch)
            while time.monotonic() - start < cfg.churn_s:
                try:
                    await admin.SetFlags(
                        admin_pb2.SetFlagsRequest(flags_json=docs[(taken + refused) % len(docs)])
                    )
                    taken += 1
                except grpc.aio.AioRpcError:
                    refused += 1
                await asyncio.sleep(0.2)
        stop.set()
        await task
        stall = longest_stall(probe.stop(), start, time.monotonic())
        code = await asyncio.to_thread(server.stop)
    what = f"{taken + refused} flag documents set in {cfg.churn_s:.0f} s, every other one invalid, {cfg.rate:.0f} req/s"
    return Outcome("flags churn", what, load, stall, {"taken": taken, "refused": refused, "exit code": code})


def _hostile_messages(big_mb: int) -> dict[str, tuple[str, bytes]]:
    """(method, serialized request) of each kind of hostile message."""
    from ortserve._proto.ortserve.v1 import inference_pb2 as pb
    from ortserve.edge.codec import encode_bytes_tensor

    n = big_mb * _MB
    over = pb.PredictRequest(model="digits")
    over.inputs.append(pb.Tensor(name="input", dtype="float32", shape=[n // 256, 64], data=bytes(n)))
    strings = encode_bytes_tensor(np.array(["elements"] * (n // 13), dtype=object))
    unknown = pb.PredictRequest(model="nope")
    unknown.inputs.append(pb.Tensor(name="text", dtype="string", shape=[n // 13], data=strings))
    budget = pb.PredictRequest(model="digits")  # under the message limit, over the in-flight bound
    budget.inputs.append(pb.Tensor(name="input", dtype="float32", shape=[n // 512, 64], data=bytes(n // 2)))
    shape = pb.PredictRequest(model="digits")
    shape.inputs.append(pb.Tensor(name="input", dtype="float32", shape=[0, 2**31, 2**31]))
    predict = "/ortserve.v1.Inference/Predict"
    return {
        f"{big_mb} MB over the message limit": (predict, over.SerializeToString()),
        f"{n * 12 // 13 // _MB} MB of BYTES for an unknown model": (predict, unknown.SerializeToString()),
        f"{big_mb // 2} MB over the in-flight bound": (predict, budget.SerializeToString()),
        "1 MB that is no message": (predict, b"\xff" * _MB),
        "absurd shape": (predict, shape.SerializeToString()),
    }


async def hostile(cfg: Config) -> Outcome:
    """A storm of oversized and malformed messages under paced load; memory before and after."""
    limit = str(cfg.big_mb * _MB)
    with tempfile.TemporaryDirectory() as d:
        args = ("--max-message-size", limit, "--max-inflight-bytes", str(cfg.big_mb * _MB // 4))
        args += ("--max-concurrent-rpcs", "1024")
        server = _start(_repo(Path(d)), *args)
        messages = _hostile_messages(cfg.big_mb)
        probe, load, stop, storm = Probe(server.target), Tally(), asyncio.Event(), Tally()
        task = asyncio.ensure_future(paced(server.target, cfg.rate, stop, _one_row, load))
        await asyncio.sleep(cfg.settle_s)
        quiet = (time.monotonic() - cfg.settle_s / 2, time.monotonic())
        before = process_tree_rss(server.proc.pid)
        windows: dict[str, list[tuple[float, float]]] = {kind: [] for kind in messages}
        options = [("grpc.max_send_message_length", 4 * cfg.big_mb * _MB)]
        with RssSampler(server.proc.pid) as rss:
            async with grpc.aio.insecure_channel(server.target, options=options) as ch:
                for _ in range(cfg.storm_rounds):
                    for kind, (method, raw) in messages.items():
                        call = ch.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
                        sent = time.monotonic()
                        await asyncio.gather(*(storm.call(call(raw, timeout=DEADLINE_S)) for _ in range(3)))
                        windows[kind].append((sent, time.monotonic()))
            await asyncio.sleep(cfg.settle_s)
            after = process_tree_rss(server.proc.pid)
        stop.set()
        await task
        probes = probe.stop()
        code = await asyncio.to_thread(server.stop)
    stalls = {kind: max(longest_stall(probes, a, b) for a, b in w) for kind, w in windows.items()}
    peak = max((mib for _, mib in rss.samples), default=after)
    what = f"{cfg.storm_rounds} rounds of 3 concurrent messages of each kind, {cfg.rate:.0f} req/s alongside"
    baseline = longest_stall(probes, *quiet)
    extra = {
        "stall by kind (ms)": stalls,
        "longest health check before the storm (ms)": baseline,
        "exit code": code,
        "settle_s": cfg.settle_s,
    }
    return Outcome("hostile messages", what, load, max(stalls.values()), extra, storm, (before, peak, after))
