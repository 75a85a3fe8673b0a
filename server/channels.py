"""How ortserve's clients connect: TLS credentials, the credential metadata sent with every call,
and the channel's options (message size, client-side health checking). ``Client``,
``AsyncClient`` (``ortserve.client``) and ``AdminClient`` (``ortserve.admin_client``) share it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

__all__ = ["HEALTH_CHECKED", "MB", "Pem", "Security", "channel_credentials", "options"]

MB = 1024 * 1024

# Client-side health checking (gRFC A17): the channel watches grpc.health.v1 ("" = the whole server)
# on every address of the target and sends only to those SERVING, round-robin among them.
HEALTH_CHECKED = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)


def options(
    max_message_size: int, server_name: str | None = None, health_check: bool = False
) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_size),
        ("grpc.max_send_message_length", max_message_size),
    ]
    if server_name:  # the name the server's certificate is for, when it is not the target's host
        options.append(("grpc.ssl_target_name_override", server_name))
    if health_check:
        options.append(("grpc.service_config", HEALTH_CHECKED))
    return options


Pem = bytes | str | Path | None


def _pem(value: Pem) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def channel_credentials(
    root_certificates: Pem = None, certificate_chain: Pem = None, private_key: Pem = None
) -> grpc.ChannelCredentials:
    """TLS credentials from PEM bytes or file paths (root None: the system's CAs)."""
    return grpc.ssl_channel_credentials(_pem(root_certificates), _pem(private_key), _pem(certificate_chain))


class Security:
    """What the clients share: TLS when any certificate option (or ``tls=True``) is given, and the
    credential metadata sent with every call."""

    def __init__(
        self,
        tls: bool,
        root_certificates: Pem,
        certificate_chain: Pem,
        private_key: Pem,
        api_key: str | None,
        token: str | None,
    ) -> None:
        if api_key and token:
            raise ValueError("give api_key or token, not both")
        self.tls = tls or any(x is not None for x in (root_certificates, certificate_chain, private_key))
        self.credentials = (
            channel_credentials(root_certificates, certificate_chain, private_key) if self.tls else None
        )
        secret = api_key or token
        self.metadata: list[tuple[str, str]] = [("authorization", f"Bearer {secret}")] if secret else []

    def channel(
        self, target: str, max_message_size: int, server_name: str | None, health_check: bool = False
    ) -> grpc.Channel:
        """A channel to ``target``: TLS with these credentials, else plaintext."""
        opts = options(max_message_size, server_name, health_check)
        if self.credentials is not None:
            return grpc.secure_channel(target, self.credentials, options=opts)
        return grpc.insecure_channel(target, options=opts)

    def aio_channel(
        self, target: str, max_message_size: int, server_name: str | None, health_check: bool = False
    ) -> grpc.aio.Channel:
        """``channel`` for grpc.aio."""
        opts = options(max_message_size, server_name, health_check)
        if self.credentials is not None:
            return grpc.aio.secure_channel(target, self.credentials, options=opts)
        return grpc.aio.insecure_channel(target, options=opts)

    def merge(self, metadata: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
        if not self.metadata:
            return metadata
        return self.metadata + list(metadata or ())
