"""``ortserve rollout start|status|abort|report``: automated rollouts, through the server's Admin service.

    ortserve rollout start --model digits --candidate 3 --steps 5,25,50 --step-seconds 60 --wait
    ortserve rollout start --model digits --candidate 3 --spec rollout.toml
    ortserve rollout status --model digits
    ortserve rollout abort --model digits --reason "paged"
    ortserve rollout report --model digits --png digits-rollout.png

The server is 127.0.0.1:8001 unless ``--target`` says otherwise; ``--root-certificates`` (TLS), ``--api-key``
(or ORTSERVE_API_KEY), ``--token`` and the mTLS options as for the Python client. ``report`` draws its PNG
with matplotlib (``pip install 'ortserve[plots]'``), imported only then. Exit status: 0, 1 when
``--wait`` ends in a rollback or an abort, 2 for a refused call or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

FINAL = ("promoted", "rolled-back", "aborted")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ortserve rollout",
        description="Automated rollouts: traffic steps judged candidate against baseline, then promotion or rollback.",
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="start rolling out a candidate version")
    start.add_argument("--candidate", required=True, help="the version to roll out")
    start.add_argument(
        "--baseline", default="", help="the version to judge it against (default: the default version)"
    )
    start.add_argument("--spec", type=Path, help="rollout spec, TOML or JSON (README 'Automated rollouts')")
    start.add_argument("--steps", help="candidate's percent of traffic per step, e.g. 5,25,50")
    start.add_argument("--step-seconds", type=float, help="the least time per step")
    start.add_argument("--step-requests", type=int, help="the least candidate requests per step")
    start.add_argument("--checks", help="what the judge checks: errors,latency,accuracy (any of them)")
    start.add_argument("--latency-slo-ms", type=float, help="a request slower than this is a bad event")
    start.add_argument("--alpha", type=float, help="the judge's false-alarm bound (default 0.05)")
    start.add_argument(
        "--shadow-requests", type=int, help="mirror to the candidate first, until this many compared"
    )
    start.add_argument("--reason", default="", help="why (audit log)")
    status = sub.add_parser("status", help="where the model's rollout stands")
    abort = sub.add_parser("abort", help="stop the rollout: all traffic to the baseline at once")
    abort.add_argument("--reason", default="", help="why (audit log)")
    report = sub.add_parser("report", help="the A/B report (and a PNG of the variants over time)")
    report.add_argument("--png", type=Path, help="where to write the PNG (default: rollout-<model>.png)")
    report.add_argument("--no-png", action="store_true", help="print the report only")
    for q in (start, status):
        q.add_argument("--wait", action="store_true", help="follow the rollout until it ends")
    for q in sub.choices.values():
        q.add_argument("--model", required=True)
        q.add_argument("--target", default="127.0.0.1:8001", help="the server's gRPC address")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
        q.add_argument("--root-certificates", type=Path, help="PEM CA of the server's certificate (TLS)")
        q.add_argument("--certificate-chain", type=Path, help="client certificate (mTLS)")
        q.add_argument("--private-key", type=Path, help="client key (mTLS)")
        q.add_argument("--server-name", help="the name the server's certificate is for")
        q.add_argument(
            "--api-key", default=os.environ.get("ORTSERVE_API_KEY"), help="(default: $ORTSERVE_API_KEY)"
        )
        q.add_argument("--token", help="a JWT")
    return p


def _spec(args: argparse.Namespace) -> str:
    text = args.spec.read_text() if args.spec else ""
    table: dict[str, Any] = {}
    if text.strip():
        import tomllib

        table = json.loads(text) if text.strip().startswith("{") else tomllib.loads(text)
    if args.steps:
        table["steps"] = [int(s) for s in args.steps.split(",") if s.strip()]
    if args.checks is not None:
        table["checks"] = [c.strip() for c in args.checks.split(",") if c.strip()]
    for key in ("step_seconds", "step_requests", "latency_slo_ms", "alpha"):
        if getattr(args, key) is not None:
            table[key] = getattr(args, key)
    if args.shadow_requests is not None:
        table.setdefault("shadow", {})["requests"] = args.shadow_requests
    return json.dumps(table)


def describe(record: dict[str, Any]) -> str:
    lines = [
        f"rollout {record['id']} of {record['model']}: {record['state']}"
        + ("" if record["state"] in FINAL else f", {_step(record)}"),
        f"  candidate {record['candidate']} against baseline {record['baseline']}; started {record['started_at']} "
        f"by {record['started_by']}",
        f"  e-value {record['e_value']:.3g} (rollback at {record['threshold']:g})"
        + (f"; {record['needed']} more candidate requests needed" if record["needed"] else ""),
        f"  {record['reason']}",
    ]
    return "\n".join(lines)


def _step(record: dict[str, Any]) -> str:
    if record["phase"] == "shadow":
        return "shadow phase"
    return f"step {record['step'] + 1} of {len(record['steps'])} ({record['weight']}%)"


def _follow(admin: Any, model: str, record: dict[str, Any], quiet: bool) -> dict[str, Any]:
    from ortserve.admin_client import status_dict

    seen = len(record.get("transitions", []))
    while record["state"] not in FINAL:
        time.sleep(1.0)
        record = status_dict(admin.get_rollout(model))
        for t in record["transitions"][seen:]:
            if not quiet:
                print(f"{t['time']} {t['state']} {t['weight']}%: {t['reason']}", flush=True)
        seen = len(record["transitions"])
    return record


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv[1:] if argv and argv[0] == "rollout" else argv)
    import grpc

    from ortserve.admin_client import AdminClient, status_dict

    try:
        admin = AdminClient(
            args.target,
            root_certificates=args.root_certificates,
            certificate_chain=args.certificate_chain,
            private_key=args.private_key,
            server_name=args.server_name,
            api_key=args.api_key,
            token=args.token,
        )
    except (OSError, ValueError) as e:
        print(f"ortserve rollout: {e}", file=sys.stderr)
        return 2
    try:
        with admin:
            if args.action == "report":
                return _report(args, admin.rollout_report(args.model, timeout=args.timeout))
            if args.action == "start":
                status = admin.start_rollout(
                    args.model, args.candidate, baseline=args.baseline, spec=_spec(args), reason=args.reason,
                    timeout=args.timeout,
                )  # fmt: skip
            elif args.action == "abort":
                status = admin.abort_rollout(args.model, args.reason, timeout=args.timeout)
            else:
                status = admin.get_rollout(args.model, timeout=args.timeout)
            record = status_dict(status)
            if not args.json:
                print(describe(record), flush=True)
            if getattr(args, "wait", False):
                record = _follow(admin, args.model, record, args.json)
                if not args.json:
                    print(describe(record))
            if args.json:
                print(
                    json.dumps({k: v for k, v in record.items() if k not in ("history", "ledger")}, indent=2)
                )
            return 1 if getattr(args, "wait", False) and record["state"] != "promoted" else 0
    except grpc.RpcError as e:
        print(f"ortserve rollout: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 2
    except (OSError, ValueError) as e:
        print(f"ortserve rollout: {e}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace, report: dict[str, Any]) -> int:
    from ortserve.rollout_report import plot, text

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(text(report))
    if not args.no_png:
        path = args.png or Path(f"rollout-{args.model}.png")
        try:
            plot(report, path)
        except ImportError:
            print(
                "ortserve rollout: the PNG needs matplotlib: pip install 'ortserve[plots]'", file=sys.stderr
            )
            return 2
        print(f"wrote {path}", file=sys.stderr)
    return 0
