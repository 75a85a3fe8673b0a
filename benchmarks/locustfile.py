"""Locust users for ortserve over gRPC: ortserve.v1 ``Predict`` or V2 ``ModelInfer`` (raw contents).

    locust -f benchmarks/locustfile.py --headless -u 64 -r 16 -t 30s --host 127.0.0.1:8001
    locust -f benchmarks/locustfile.py --host 127.0.0.1:8001 --protocol v2 --model cnn --input-name x \\
        --shape 1,3,32,32 --scale 1            # with the web UI on http://127.0.0.1:8089

Every call is reported to locust's statistics under a name that says what served it:
``Predict digits@1`` or, when a routing flag picked the version, ``Predict digits@2[int8]``
(the version and flag variant are also in the request event's ``context``). Failed calls are
reported as ``Predict digits`` with the gRPC status in the exception and in the context.

Each simulated user has its own channel (a separate client) and, with ``--targeting-keys``, its
own targeting key, so that sticky fractional flags split users the way they would split clients.
gRPC runs on gevent (``grpc.experimental.gevent.init_gevent``) so that locust's greenlets do not
block each other while a call is in flight.

Locust loads this file by its path, so it imports only installed packages (ortserve, locust, gRPC,
numpy), never ``benchmarks.*``: it works with ``locust -f <path>`` from any folder, with no
``sys.path`` changes. (That is why it builds its V2 request itself rather than with
``benchmarks.loadgen.senders.v2_request``: the two are kept to the same few lines.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

# Before any other gRPC object exists: gRPC's completion queue must cooperate with gevent.
import grpc
from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

import numpy as np  # noqa: E402
from locust import User, between, constant, events, task  # noqa: E402

DEFAULTS = {
    "protocol": "v1",
    "model": "digits",
    "model_version": "",
    "input_name": "input",
    "shape": "1,64",
    "dtype": "float32",
    "scale": 16.0,
    "request_timeout": 10.0,
    "targeting_keys": False,
    "think_time": 0.0,
}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("ortserve", "what each user sends")
    group.add_argument(
        "--protocol",
        choices=("v1", "v2"),
        default=DEFAULTS["protocol"],
        help="v1: ortserve.v1 Predict; v2: inference.GRPCInferenceService ModelInfer",
    )
    group.add_argument("--model", default=DEFAULTS["model"], help="model name")
    group.add_argument(
        "--model-version",
        default=DEFAULTS["model_version"],
        help="version to ask for (default: the server's routing decides)",
    )
    group.add_argument("--input-name", default=DEFAULTS["input_name"], help="the model's input name")
    group.add_argument("--shape", default=DEFAULTS["shape"], help="input shape, batch first, e.g. 1,3,32,32")
    group.add_argument("--dtype", default=DEFAULTS["dtype"], help="input dtype (numpy name)")
    group.add_argument(
        "--scale",
        type=float,
        default=DEFAULTS["scale"],
        help="inputs are uniform in [0, scale) (16: digits pixel values)",
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULTS["request_timeout"],
        help="gRPC deadline per call, seconds",
    )
    group.add_argument(
        "--targeting-keys",
        action="store_true",
        default=DEFAULTS["targeting_keys"],
        help="each user sends its own targeting key (sticky flag splits)",
    )
    group.add_argument(
        "--think-time",
        type=float,
        default=DEFAULTS["think_time"],
        help="mean seconds a user waits between calls (0: back to back)",
    )


def _option(env: Any, name: str) -> Any:
    opts = getattr(env, "parsed_options", None)
    return getattr(opts, name, DEFAULTS[name]) if opts is not None else DEFAULTS[name]


def _target(host: str | None) -> str:
    host = (host or "127.0.0.1:8001").strip()
    for scheme in ("grpc://", "http://", "dns:///"):
        host = host.removeprefix(scheme)
    return host.rstrip("/")


def _v2_request(model: str, inputs: Mapping[str, np.ndarray], version: str, targeting_key: str) -> Any:
    """A V2 ModelInferRequest with raw contents (as benchmarks/loadgen/senders.py builds it)."""
    from ortserve._proto.inference import grpc_service_pb2 as pb
    from ortserve.edge.codec import v2_from_numpy

    request = pb.ModelInferRequest(model_name=model, model_version=version)
    if targeting_key:
        request.parameters["targeting_key"].string_param = targeting_key
    for name, array in inputs.items():
        datatype, shape, data = v2_from_numpy(np.asarray(array))
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)
    return request


class _Caller:
    """One prepared request and the call that sends it; returns (name, bytes received, context)."""

    def __init__(self, env: Any, channel: grpc.Channel, user_index: int) -> None:
        self.protocol = _option(env, "protocol")
        self.model = _option(env, "model")
        self.timeout = _option(env, "request_timeout")
        shape = tuple(int(d) for d in str(_option(env, "shape")).split(","))
        x = (np.random.default_rng(user_index).random(shape) * _option(env, "scale")).astype(
            _option(env, "dtype")
        )
        inputs = {_option(env, "input_name"): x}
        version = _option(env, "model_version")
        key = f"user-{os.getpid()}-{user_index}" if _option(env, "targeting_keys") else ""
        if self.protocol == "v2":
            from ortserve._proto.inference import grpc_service_pb2_grpc as pb_grpc

            self.request = _v2_request(self.model, inputs, version, key)
            self.rpc = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
            self.method = "ModelInfer"
        else:
            from ortserve._proto.ortserve.v1 import inference_pb2_grpc
            from ortserve.client import build_request

            self.request = build_request(self.model, inputs, version=version, targeting_key=key)
            self.rpc = inference_pb2_grpc.InferenceStub(channel).Predict
            self.method = "Predict"
        self.failure_name = f"{self.method} {self.model}"

    def __call__(self) -> tuple[str, int, dict[str, str]]:
        resp = self.rpc(self.request, timeout=self.timeout)
        if self.protocol == "v2":
            version = resp.model_version
            variant = resp.parameters["variant"].string_param if "variant" in resp.parameters else ""
        else:
            version, variant = resp.version, resp.variant
        name = f"{self.method} {self.model}@{version}" + (f"[{variant}]" if variant else "")
        return name, resp.ByteSize(), {"model": self.model, "version": version, "variant": variant}


class GrpcInferenceUser(User):
    """A client that calls the model over and over (closed loop), each call timed and reported."""

    wait_time = constant(0)
    _count = 0

    def on_start(self) -> None:
        think = _option(self.environment, "think_time")
        if think > 0:
            self.wait_time = between(0, 2 * think)  # type: ignore[assignment]
        GrpcInferenceUser._count += 1
        self.channel = grpc.insecure_channel(_target(self.host))
        self.caller = _Caller(self.environment, self.channel, GrpcInferenceUser._count)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def infer(self) -> None:
        caller = self.caller
        exception: Exception | None = None
        start = time.perf_counter()
        try:
            name, length, context = caller()
        except grpc.RpcError as e:
            code = e.code().name if callable(getattr(e, "code", None)) else type(e).__name__
            exception = e
            name, length, context = caller.failure_name, 0, {"model": caller.model, "code": code}
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context=context,
        )
