"""How a rollout moves traffic: only by editing the flags document through ``FlagSource`` (validated and
written atomically like Admin SetFlags), so a restart, another worker or an operator reading
``flags.json`` sees the truth. The model's flag while a rollout runs::

    "digits": {"state": "ENABLED", "defaultVariant": "baseline",
               "variants": {"baseline": "1", "candidate": "3"},
               "targeting": {"fractional": [["baseline", 75], ["candidate", 25]]}}

Rollback and abort set ``"state": "DISABLED"`` (flagd's kill switch: everyone gets ``defaultVariant``, the
baseline) and leave the flag there as a record; promotion removes it once the model's default version is
the candidate. During a shadow phase ``<model>.shadow`` mirrors traffic to the candidate; a shadow flag
that was there before is put back afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ortserve.repository.flagsdoc import canary_flag
from ortserve.rollout.flags import SHADOW_SUFFIX
from ortserve.rollout.source import FlagSource
from ortserve.rollout.state import Rollout

log = logging.getLogger("ortserve.rollout")

__all__ = ["KILL", "RETIRE", "ROUTE", "apply", "finish", "flag_in_force", "flag_of", "move", "planned"]

BASELINE, CANDIDATE = "baseline", "candidate"


def main_flag(r: Rollout, enabled: bool = True) -> dict[str, Any]:
    flag = canary_flag(
        r.spec.baseline, r.spec.candidate, r.weight, stable_variant=BASELINE, candidate_variant=CANDIDATE
    )
    if not enabled:
        flag["state"] = "DISABLED"
    return flag


def shadow_flag(r: Rollout) -> dict[str, Any]:
    assert r.spec.shadow is not None
    percent = r.spec.shadow.percent
    flag: dict[str, Any] = {
        "state": "ENABLED",
        "defaultVariant": CANDIDATE if percent == 100 else "off",
        "variants": {"off": "", CANDIDATE: r.spec.candidate},
    }
    if percent < 100:
        flag["targeting"] = {"fractional": [["off", 100 - percent], [CANDIDATE, percent]]}
    return flag


def _shadow_back(r: Rollout, flags: dict[str, Any]) -> None:
    """Leave the shadow phase: the shadow flag that was there before, or none."""
    key = r.model + SHADOW_SUFFIX
    if r.shadow_flag is None:
        return
    if flags.get(key) == r.shadow_flag:
        if r.previous_shadow is not None:
            flags[key] = r.previous_shadow
        else:
            flags.pop(key, None)
    r.shadow_flag = None


ROUTE, KILL, RETIRE = "route", "kill", "retire"


def planned(r: Rollout, kind: str) -> dict[str, Any] | None:
    """The model's flag after a move of ``kind``: the split at the rollout's weight, the kill switch, or
    none (retired)."""
    if kind == ROUTE:
        return main_flag(r)
    if kind == KILL:
        return main_flag(r, enabled=False)
    return None


async def apply(r: Rollout, flags: FlagSource, kind: str) -> None:
    """Write ``r.flag`` (what ``planned`` gave) as the model's flag, and the shadow flag the phase needs.
    A retired flag is removed only if it is still the one the rollout wrote (``r.prev_flag``)."""
    mine, mirror = r.flag, shadow_flag(r) if kind == ROUTE and r.phase == "shadow" else None

    def change(doc: dict[str, Any]) -> None:
        table = doc["flags"]
        if mine is not None:
            table[r.model] = mine
        elif table.get(r.model) in (r.prev_flag, None):
            table.pop(r.model, None)
        key = r.model + SHADOW_SUFFIX
        if mirror is not None:
            if r.shadow_flag is None and key in table:
                r.previous_shadow = table[key]
            table[key] = mirror
        else:
            _shadow_back(r, table)

    await flags.edit(change)
    r.shadow_flag = mirror


async def move(r: Rollout, flags: FlagSource, kind: str, save: Callable[[Rollout], Awaitable[None]]) -> None:
    """Move traffic: the record first (``save``, with the flag it is about to write), then the flags
    document, so that a move a crash cuts short is finished at the next start (``finish``)."""
    before, r.prev_flag, r.flag = r.flag, r.flag, planned(r, kind)
    await save(r)
    try:
        await apply(r, flags, kind)
    except BaseException:
        r.flag = before
        raise


async def finish(r: Rollout, flags: FlagSource) -> None:
    """At start: the flags show the state before the move the record says was under way: make it."""
    if r.flag == r.prev_flag or flag_in_force(flags, r.model) != r.prev_flag:
        return
    kind = RETIRE if r.flag is None else KILL if r.flag.get("state") == "DISABLED" else ROUTE
    log.warning("rollout %s of %s: finishing the move a stop cut short (%s)", r.id, r.model, kind)
    await apply(r, flags, kind)


def flag_in_force(flags: FlagSource, key: str) -> Any:
    """The definition of flag ``key`` in the document routing now (None when absent)."""
    return flag_of(flags.flags.text, key)


def flag_of(text: str, key: str) -> Any:
    """The definition of flag ``key`` in a flags document's text (None when absent)."""
    if not text:
        return None
    try:
        return json.loads(text).get("flags", {}).get(key)
    except (ValueError, AttributeError):
        return None
