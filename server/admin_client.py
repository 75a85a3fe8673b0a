"""A client for ``ortserve.v1.Admin``: routing flags, versions and automated rollouts.

    from ortserve.admin_client import AdminClient
    with AdminClient("127.0.0.1:8001") as admin:
        status = admin.start_rollout("digits", "3", spec='steps = [5, 25, 50]\\nstep_seconds = 60')
        print(status.state, status.weight, status.needed)
        report = admin.rollout_report("digits")          # dict: variants, judge, decision, history
        admin.abort_rollout("digits", reason="pager")    # all traffic back to the baseline at once

TLS and credentials as for :class:`ortserve.client.Client` (``root_certificates=``, ``api_key=``, ...).
Starting and aborting need a role with the ``flags`` group (operator, admin); reading a rollout needs
``metadata`` (any built-in role).
"""

from __future__ import annotations

import json
from typing import Any

from ortserve._proto.ortserve.v1 import admin_pb2 as pb
from ortserve._proto.ortserve.v1 import admin_pb2_grpc as pb_grpc
from ortserve.channels import MB, Pem, Security

__all__ = ["AdminClient", "status_dict"]


def status_dict(status: pb.RolloutStatus) -> dict[str, Any]:
    """The rollout's whole record (counts, evidence, transitions, history) from a RolloutStatus."""
    return json.loads(status.record_json) if status.record_json else {}


class AdminClient:
    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        *,
        tls: bool = False,
        root_certificates: Pem = None,
        certificate_chain: Pem = None,
        private_key: Pem = None,
        server_name: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        max_message_size: int = 64 * MB,
    ) -> None:
        self._security = sec = Security(
            tls, root_certificates, certificate_chain, private_key, api_key, token
        )
        self.channel = sec.channel(target, max_message_size, server_name)
        self.stub = pb_grpc.AdminStub(self.channel)

    def _md(self) -> list[tuple[str, str]] | None:
        return self._security.merge(None)

    # -- flags -------------------------------------------------------------------------------------
    def get_flags(self, timeout: float | None = None) -> pb.GetFlagsResponse:
        return self.stub.GetFlags(pb.GetFlagsRequest(), timeout=timeout, metadata=self._md())

    def set_flags(self, flags_json: str, timeout: float | None = None) -> pb.SetFlagsResponse:
        return self.stub.SetFlags(
            pb.SetFlagsRequest(flags_json=flags_json), timeout=timeout, metadata=self._md()
        )

    def list_versions(self, timeout: float | None = None) -> pb.ListVersionsResponse:
        return self.stub.ListVersions(pb.ListVersionsRequest(), timeout=timeout, metadata=self._md())

    # -- rollouts ----------------------------------------------------------------------------------
    def start_rollout(
        self,
        model: str,
        candidate: str | int,
        *,
        baseline: str | int = "",
        spec: str = "",
        reason: str = "",
        timeout: float | None = 30.0,
    ) -> pb.RolloutStatus:
        """Start rolling out version ``candidate`` (``spec``: TOML or JSON, README "Automated rollouts")."""
        request = pb.StartRolloutRequest(
            model=model, candidate=str(candidate), baseline=str(baseline or ""), spec=spec, reason=reason
        )
        return self.stub.StartRollout(request, timeout=timeout, metadata=self._md())

    def get_rollout(self, model: str, timeout: float | None = 30.0) -> pb.RolloutStatus:
        return self.stub.GetRollout(pb.GetRolloutRequest(model=model), timeout=timeout, metadata=self._md())

    def abort_rollout(self, model: str, reason: str = "", timeout: float | None = 30.0) -> pb.RolloutStatus:
        request = pb.AbortRolloutRequest(model=model, reason=reason)
        return self.stub.AbortRollout(request, timeout=timeout, metadata=self._md())

    def rollout_report(self, model: str, timeout: float | None = 30.0) -> dict[str, Any]:
        request = pb.GetRolloutReportRequest(model=model)
        return json.loads(
            self.stub.GetRolloutReport(request, timeout=timeout, metadata=self._md()).report_json
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
