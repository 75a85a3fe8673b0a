"""A small client for ``ortserve.v1.Inference``, sync and asyncio::

    from ortserve.client import Client
    with Client("127.0.0.1:8001") as c:
        result = c.predict("digits", {"input": pixels})   # pixels: float32 [N, 64]
        print(result["label"], result.version)
        c.feedback(result.request_id, labels=[7])          # the true class of each row, later

    async with AsyncClient("127.0.0.1:8001") as c:
        result = await c.predict("digits", {"input": pixels})

Errors come back as ``grpc.RpcError`` (``grpc.aio.AioRpcError`` with AsyncClient): ``e.code()`` is the status
(``NOT_FOUND``, ``INVALID_ARGUMENT``...) and ``e.details()`` the server's message.

A server with TLS and an auth file (README "Security"): give the CA that signed its certificate, and
an API key or a JWT (sent as ``authorization: Bearer ...`` with every call); for mTLS, the client's
own certificate and key. Certificates are PEM bytes or paths to PEM files::

    Client("server.example:8001", root_certificates="ca.pem", api_key=os.environ["ORTSERVE_API_KEY"])
    Client(target, root_certificates="ca.pem", certificate_chain="client.pem", private_key="client.key")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ortserve._proto.ortserve.v1 import admin_pb2 as admin_pb
from ortserve._proto.ortserve.v1 import admin_pb2_grpc as admin_grpc
from ortserve._proto.ortserve.v1 import inference_pb2 as pb
from ortserve._proto.ortserve.v1 import inference_pb2_grpc as pb_grpc
from ortserve.channels import MB, Pem, Security, channel_credentials
from ortserve.edge.codec import from_numpy, to_numpy

__all__ = ["AsyncClient", "Client", "Feedback", "Prediction", "build_feedback", "channel_credentials"]


@dataclass
class Prediction:
    outputs: dict[str, np.ndarray]
    model: str
    version: str
    variant: str = ""
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]


def build_request(
    model: str,
    inputs: Mapping[str, Any],
    version: str = "",
    outputs: list[str] | None = None,
    request_id: str = "",
    targeting_key: str = "",
    priority: int = 0,
) -> pb.PredictRequest:
    req = pb.PredictRequest(
        model=model,
        version=str(version or ""),
        outputs=outputs or [],
        request_id=request_id,
        targeting_key=targeting_key,
        priority=priority,
    )
    for name, value in inputs.items():
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        dtype, shape, data = from_numpy(array)
        req.inputs.append(pb.Tensor(name=name, dtype=dtype, shape=shape, data=data))
    return req


def parse_response(resp: pb.PredictResponse) -> Prediction:
    outputs = {t.name: to_numpy(t.name, t.dtype, t.shape, t.data) for t in resp.outputs}
    return Prediction(outputs, resp.model, resp.version, resp.variant, resp.request_id)


Feedback = tuple[str, Sequence[int], Sequence[float], float | None]  # (request id, labels, targets, reward)


def build_feedback(items: Iterable[Feedback]) -> pb.FeedbackRequest:
    req = pb.FeedbackRequest()
    for request_id, labels, targets, reward in items:
        item = req.items.add(request_id=request_id, labels=[int(v) for v in labels], targets=list(targets))
        if reward is not None:
            item.reward = float(reward)
    return req


def _one(request_id: str, labels: Any, targets: Any, reward: float | None) -> pb.FeedbackRequest:
    return build_feedback(
        [
            (
                request_id,
                list(np.ravel(labels)) if labels is not None else [],
                list(np.ravel(targets)) if targets is not None else [],
                reward,
            )
        ]
    )


class _Connected:
    """What both clients hold: one channel to ``target`` (TLS and credentials as given: README "Security"),
    the Inference stub and the Admin stub (for the model card).

    ``health_check=True`` turns on gRPC's client-side health checking: the channel watches each
    server's health and stops sending to one that turned NOT_SERVING (a server draining on SIGTERM
    does so first), round-robin over the target's addresses that are SERVING; a call while none is
    fails at once with UNAVAILABLE, never sent. A server that refuses the watch (an auth file
    without ``open_health``) would look unhealthy for good: give the server ``--open-health`` then."""

    _aio = False

    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        *,
        max_message_size: int = 64 * MB,
        tls: bool = False,
        root_certificates: Pem = None,
        certificate_chain: Pem = None,
        private_key: Pem = None,
        server_name: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        health_check: bool = False,
    ) -> None:
        self._security = sec = Security(
            tls, root_certificates, certificate_chain, private_key, api_key, token
        )
        connect = sec.aio_channel if self._aio else sec.channel
        self.channel: Any = connect(target, max_message_size, server_name, health_check)
        self.stub = pb_grpc.InferenceStub(self.channel)
        self.admin = admin_grpc.AdminStub(self.channel)


class Client(_Connected):
    """A blocking client over one channel; use it as a context manager (or call ``close``)."""

    def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: str = "",
        outputs: list[str] | None = None,
        timeout: float | None = None,
        request_id: str = "",
        targeting_key: str = "",
        priority: int = 0,
        metadata: list[tuple[str, str]] | None = None,
    ) -> Prediction:
        """``inputs``: input name -> array. ``version`` "" for the default (or what a flag routes to); ``timeout``
        (s) is also the deadline in the server's queue; ``priority`` 1 is the highest; ``metadata`` e.g. x-variant."""
        req = build_request(model, inputs, version, outputs, request_id, targeting_key, priority)
        md = self._security.merge(metadata)
        return parse_response(self.stub.Predict(req, timeout=timeout, metadata=md))

    def feedback(
        self,
        request_id: str,
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        targets: Sequence[float] | np.ndarray | None = None,
        reward: float | None = None,
        timeout: float | None = None,
    ) -> pb.FeedbackResult:
        """Ground truth for the request ``request_id``: the true class of each of its rows (``labels``)
        or their true values (``targets``). The result's ``status`` says whether it joined (correct,
        incorrect, scored) or not (unknown, duplicate, invalid: counted by the server, not raised)."""
        return self.stub.Feedback(
            _one(request_id, labels, targets, reward), timeout=timeout, metadata=self._security.merge(None)
        ).results[0]

    def feedback_many(
        self, items: Iterable[Feedback], timeout: float | None = None
    ) -> list[pb.FeedbackResult]:
        """Several at once: (request id, labels, targets, reward) each; at most 10000 per call."""
        return list(
            self.stub.Feedback(
                build_feedback(items), timeout=timeout, metadata=self._security.merge(None)
            ).results
        )

    def list_models(self) -> pb.ListModelsResponse:
        """The loaded models with their versions and default version."""
        return self.stub.ListModels(pb.ListModelsRequest(), metadata=self._security.merge(None))

    def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(model=model, version=str(version or ""))
        return self.stub.ModelMetadata(request, metadata=self._security.merge(None))

    def model_card(self, model: str, version: str = "") -> str:
        """A version's MODEL_CARD.md (Markdown; the default version's for ""); NOT_FOUND when it has none."""
        req = admin_pb.GetModelCardRequest(model=model, version=str(version or ""))
        return self.admin.GetModelCard(req, metadata=self._security.merge(None)).markdown

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Connected):
    """The asyncio twin of :class:`Client` (grpc.aio); use it as an async context manager."""

    _aio = True

    async def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: str = "",
        outputs: list[str] | None = None,
        timeout: float | None = None,
        request_id: str = "",
        targeting_key: str = "",
        priority: int = 0,
        metadata: list[tuple[str, str]] | None = None,
    ) -> Prediction:
        """``inputs``: input name -> array. ``version`` "" for the default (or what a flag routes to); ``timeout``
        (s) is also the deadline in the server's queue; ``priority`` 1 is the highest; ``metadata`` e.g. x-variant."""
        req = build_request(model, inputs, version, outputs, request_id, targeting_key, priority)
        md = self._security.merge(metadata)
        return parse_response(await self.stub.Predict(req, timeout=timeout, metadata=md))

    async def feedback(
        self,
        request_id: str,
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        targets: Sequence[float] | np.ndarray | None = None,
        reward: float | None = None,
        timeout: float | None = None,
    ) -> pb.FeedbackResult:
        """Ground truth for the request ``request_id``: the true class of each of its rows (``labels``)
        or their true values (``targets``). The result's ``status`` says whether it joined (correct,
        incorrect, scored) or not (unknown, duplicate, invalid: counted by the server, not raised)."""
        request = _one(request_id, labels, targets, reward)
        response = await self.stub.Feedback(request, timeout=timeout, metadata=self._security.merge(None))
        return response.results[0]

    async def feedback_many(
        self, items: Iterable[Feedback], timeout: float | None = None
    ) -> list[pb.FeedbackResult]:
        """Several at once: (request id, labels, targets, reward) each; at most 10000 per call."""
        request = build_feedback(items)
        response = await self.stub.Feedback(request, timeout=timeout, metadata=self._security.merge(None))
        return list(response.results)

    async def list_models(self) -> pb.ListModelsResponse:
        """The loaded models with their versions and default version."""
        return await self.stub.ListModels(pb.ListModelsRequest(), metadata=self._security.merge(None))

    async def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(model=model, version=str(version or ""))
        return await self.stub.ModelMetadata(request, metadata=self._security.merge(None))

    async def model_card(self, model: str, version: str = "") -> str:
        """A version's MODEL_CARD.md (Markdown; the default version's for ""); NOT_FOUND when it has none."""
        req = admin_pb.GetModelCardRequest(model=model, version=str(version or ""))
        return (await self.admin.GetModelCard(req, metadata=self._security.merge(None))).markdown

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
