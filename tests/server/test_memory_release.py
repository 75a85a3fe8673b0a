"""Memory goes back once requests are answered: no reference cycle holds a request, and the heap
trimmer returns the free memory glibc's malloc keeps.

grpc.aio keeps the error ``context.abort`` raises on the RPC's state, which the frames it went
through reach again through the context: every refused request was held in a reference cycle with
its message and tensors until a full collection (the chaos suite's hostile messages left the server
40-180 MiB over its starting memory in most runs). The first test runs the real server in process
with the garbage collector off, sends requests that end in every way an RPC ends (refused, answered,
cancelled), and looks for the server's frames among what only the collector frees."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import threading
import types
from pathlib import Path

import grpc
import pytest

import ortserve
from ortserve._proto.inference import grpc_service_pb2 as v2pb
from ortserve._proto.ortserve.v1 import inference_pb2 as pb
from ortserve.ops.resources import HeapTrimmer
from ortserve.ops.settings import Settings
from tests import onnx_models as m
from tests.server.inprocess import run_in_app

PACKAGE = str(Path(ortserve.__file__).parent)
PREDICT = "/ortserve.v1.Inference/Predict"
V2_INFER = "/inference.GRPCInferenceService/ModelInfer"
V2_STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"
_MB = 1 << 20


def _predict(model: str, rows: int, *names: str) -> bytes:
    request = pb.PredictRequest(model=model)
    for name in names:
        request.inputs.append(pb.Tensor(name=name, dtype="float32", shape=[rows, 4], data=bytes(16 * rows)))
    return request.SerializeToString()


UNARY = {  # each answered with an error, except "answered"
    "unknown model, 1 MB": (PREDICT, _predict("nope", _MB // 16, "a", "b")),
    "over max_batch_size": (PREDICT, _predict("addmul", 4096, "a", "b")),
    "missing input": (PREDICT, _predict("addmul", 1, "a")),
    "no message": (PREDICT, b"\xff" * 1000),
    "v2, unknown model": (V2_INFER, v2pb.ModelInferRequest(model_name="nope").SerializeToString()),
    "answered": (PREDICT, _predict("addmul", 1, "a", "b")),
}
STREAMS = {  # an item answered with its error; a message that does not parse ends the stream
    "stream item for an unknown model": [v2pb.ModelInferRequest(model_name="nope").SerializeToString()],
    "stream message that does not parse": [b"\xff" * 1000],
}


def _server_frames(garbage: list) -> list[str]:
    return sorted(
        f"{f.f_code.co_name} ({f.f_code.co_filename.removeprefix(PACKAGE)}:{f.f_lineno})"
        for f in garbage
        if isinstance(f, types.FrameType) and f.f_code.co_filename.startswith(PACKAGE)
    )


async def _cancelled(app, channel) -> str:
    """A request cancelled by its client while it waits in the batcher's queue."""
    call = channel.unary_unary(PREDICT, request_serializer=bytes, response_deserializer=bytes)
    pending = call(_predict("queued", 1, "a", "b"), timeout=30)
    for _ in range(3000):  # until the server holds it (the queue's window is 60 s)
        if app.inflight.count or pending.done():
            break
        await asyncio.sleep(0.01)
    assert app.inflight.count == 1, "the request never reached the server's queue"
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    assert await app.inflight.wait_idle(timeout=30)
    return "CANCELLED"


async def _send(app, target: str, cancel: bool = True) -> dict[str, str]:
    """Every request once; the status each ended with."""
    codes = {}
    async with grpc.aio.insecure_channel(target) as channel:
        if cancel:  # once: the request after a cancelled one would not wait for its window
            codes["cancelled while queued"] = await _cancelled(app, channel)
        for kind, (method, raw) in UNARY.items():
            call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
            try:
                await call(raw, timeout=30)
                codes[kind] = "OK"
            except grpc.aio.AioRpcError as e:
                codes[kind] = e.code().name
        for kind, messages in STREAMS.items():
            stream = channel.stream_stream(V2_STREAM, request_serializer=bytes, response_deserializer=bytes)
            try:
                async for _ in stream(iter(messages), timeout=30):
                    pass
                codes[kind] = "OK"
            except grpc.aio.AioRpcError as e:
                codes[kind] = e.code().name
    return codes


def test_finished_rpcs_leave_no_reference_cycle_holding_their_request(tmp_path):
    m.publish(tmp_path, "addmul", 1, m.addmul(), "max_batch_size = 8\n")
    m.publish(
        tmp_path,
        "queued",
        1,
        m.addmul(),
        "max_batch_size = 4\n[batching]\nmax_queue_delay_us = 60000000\npreferred_batch_sizes = [4]\n",
    )
    found: dict = {}

    async def body(app, target):
        await _send(app, target, cancel=False)  # what is made once (stubs, caches) is made now
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable stays in gc.garbage
        try:
            found["codes"] = await _send(app, target)
            assert await app.inflight.wait_idle(timeout=30)  # every server frame has unwound
            await asyncio.sleep(0)
            gc.collect()
            found["frames"] = _server_frames(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    try:
        run_in_app(Settings(model_repository=tmp_path, port=0, metrics_port=-1), body)
    finally:
        gc.unfreeze()
    assert found["codes"] == {
        "cancelled while queued": "CANCELLED",
        "unknown model, 1 MB": "NOT_FOUND",
        "over max_batch_size": "INVALID_ARGUMENT",
        "missing input": "INVALID_ARGUMENT",
        "no message": "INVALID_ARGUMENT",
        "v2, unknown model": "NOT_FOUND",
        "answered": "OK",
        "stream item for an unknown model": "OK",  # the error is the item's answer
        "stream message that does not parse": "INVALID_ARGUMENT",
    }
    assert found["frames"] == [], "server frames held in reference cycles:\n" + "\n".join(found["frames"])


def test_the_server_runs_the_heap_trimmer_unless_told_not_to(tmp_path):
    m.publish(tmp_path, "addmul", 1, m.addmul())
    running = {}

    def check(interval: float):
        async def body(app, target):
            running[interval] = any(t.name == "heap-trim" for t in threading.enumerate())

        run_in_app(
            Settings(model_repository=tmp_path, port=0, metrics_port=-1, heap_trim_interval=interval), body
        )

    try:
        check(1.0)
        check(0.0)
    finally:
        gc.unfreeze()
    assert running == {1.0: HeapTrimmer().available, 0.0: False}
    assert not any(t.name == "heap-trim" for t in threading.enumerate())  # stopped with the server


def _resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_heap_trimmer_gives_freed_heap_memory_back():
    trimmer = HeapTrimmer(interval=1.0, threshold=32 * _MB)
    if not trimmer.available:
        pytest.skip("needs glibc 2.33 or later and /proc (malloc_trim, mallinfo2)")
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    trimmer.check()  # from here on, only what this test frees counts
    block = 64 * 1024  # under glibc's mmap threshold: from the heap
    blocks = [libc.malloc(block) for _ in range(1024)]  # 64 MiB, written so that it is resident
    for b in blocks:
        ctypes.memset(b, 1, block)
    pins = [libc.malloc(block)]  # one above them all: freed, they are not the top of the heap,
    while pins[-1] < max(blocks) and len(pins) < 1000:  # which glibc would give back itself
        pins.append(libc.malloc(block))
    try:
        assert pins[-1] > max(blocks)
        assert not trimmer.check()  # in use: nothing to give back
        for b in blocks:
            libc.free(b)
        before = _resident()
        assert trimmer.check()
        given_back = before - _resident()
        assert given_back > 48 * _MB, f"{given_back / _MB:.1f} MiB given back of the 64 MiB freed"
        assert not trimmer.check()  # nothing more to give
    finally:
        for p in pins:
            libc.free(p)
