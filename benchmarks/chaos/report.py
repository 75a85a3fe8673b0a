"""The chaos suite's report: a table per run and the section of benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from benchmarks.chaos.load import LOST
from benchmarks.chaos.scenarios import Outcome
from benchmarks.common import command, machine, write_section

__all__ = ["HEAD", "section", "table"]

HEAD = "## Chaos: faults and hostile input"
_REFUSED = ("UNAVAILABLE (drain)", "UNAVAILABLE (not connected)", "UNAVAILABLE (not sent: NOT_SERVING)")


def _statuses(outcomes: dict[str, int]) -> str:
    shown = [
        f"{k} {v:,}" for k, v in sorted(outcomes.items()) if k != "OK" and k not in LOST and k not in _REFUSED
    ]
    return ", ".join(shown) or "none"


def table(results: Sequence[Outcome]) -> str:
    rows = [
        "| scenario | sent | OK | other answers | refused by the drain | not sent (NOT_SERVING) | not connected "
        "| lost | longest health check (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o = r.load.outcomes
        rows.append(
            f"| {r.scenario} | {r.load.sent:,} | {o['OK']:,} | {_statuses(o)} | {o['UNAVAILABLE (drain)']:,} | "
            f"{o['UNAVAILABLE (not sent: NOT_SERVING)']:,} | {o['UNAVAILABLE (not connected)']:,} | **{r.load.lost:,}** | {r.stall_ms:.0f} |"
        )
    return "\n".join(rows)


def _details(results: Sequence[Outcome]) -> str:
    lines = []
    for r in results:
        lines.append(f"- **{r.scenario}**: {r.what}.")
        for key, value in r.extra.items():
            if isinstance(value, dict):
                value = ", ".join(
                    f"{k}: {v:.0f}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items()
                )
            lines.append(f"  {key}: {value}.")
        if r.load.lost:
            lines.append(
                f"  Lost: {', '.join(f'{k} {r.load.outcomes[k]}' for k in LOST if r.load.outcomes[k])}; e.g. {r.load.examples}."
            )
        if r.hostile is not None:
            lines.append(
                f"  The hostile messages were answered: {_statuses(r.hostile.outcomes)}; lost {r.hostile.lost}."
            )
        if r.rss_mib is not None:
            before, peak, after = r.rss_mib
            lines.append(
                f"  Server RSS before / peak / 3 s after the storm: {before:.0f} / {peak:.0f} / {after:.0f} MiB "
                f"({(after - before) / before * 100:+.1f}%)."
            )
    return "\n".join(lines)


def section(results: Sequence[Outcome], argv: Sequence[str], seconds: float) -> str:
    load = os.getloadavg()
    return f"""{HEAD}

Machine: {machine()}. Load average before / after: see below. Date: {time.strftime("%Y-%m-%d")}.
Command: `{command("benchmarks.chaos", argv)}` ({seconds:.0f} s). Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min).

Each scenario runs its own server (digits, one-row Predict at a paced rate) with a process checking
health every 10 ms. *Lost* is a request the server received and did not answer: CANCELLED by the
server, its connection dropped while it was in flight, or no answer within 30 s. *Refused by the
drain* is UNAVAILABLE from a server shutting down (clients retry it); *not sent (NOT_SERVING)* is a
request a health-checking client did not send because the server's health had turned NOT_SERVING
(UNAVAILABLE at the client at once); *not connected* is a request sent after the server had gone.
SIGTERM runs twice per layout: with clients that watch the server's health (gRPC client-side health
checking, `AsyncClient(health_check=True)`: what a load balancer or a health-checking channel does)
and with clients that ignore it and keep sending to a server that refuses them. With the latter,
gRPC core cancels the calls that reach it in the instant the drained server stops (those it has
received but not handed to a handler, and those sent before the client read its GOAWAY:
grpc/grpc#41785, open), so a few can end CANCELLED. The longest health check is the longest a probe waited for its
answer (sent every 10 ms), over the scenario (for the hostile messages: while they were sent).

{table(results)}

{_details(results)}
"""


def write(results: Sequence[Outcome], argv: Sequence[str], seconds: float) -> None:
    write_section(section(results, argv, seconds), HEAD)
