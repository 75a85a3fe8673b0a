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
from typing import Any

from ortserve.repository.flagsdoc import canary_flag
from ortserve.rollout.flags import SHADOW_SUFFIX
from ortserve.rollout.source import FlagSource
from ortserve.rollout.state import Rollout

__all__ = ["flag_in_force", "kill", "retire", "route"]

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


async def route(r: Rollout, flags: FlagSource) -> None:
    """Write the model's flag for the rollout's weight (and the shadow flag in the shadow phase)."""
    main = main_flag(r)
    mirror = shadow_flag(r) if r.phase == "shadow" else None

    def change(doc: dict[str, Any]) -> None:
        table = doc["flags"]
        table[r.model] = main
        key = r.model + SHADOW_SUFFIX
        if mirror is not None:
            if r.shadow_flag is None and key in table:
                r.previous_shadow = table[key]
            table[key] = mirror
        else:
            _shadow_back(r, table)

    await flags.edit(change)
    r.flag, r.shadow_flag = main, mirror


async def kill(r: Rollout, flags: FlagSource) -> None:
    """All traffic to the baseline at once: the flag DISABLED (its default variant is the baseline)."""
    off = main_flag(r, enabled=False)

    def change(doc: dict[str, Any]) -> None:
        doc["flags"][r.model] = off
        _shadow_back(r, doc["flags"])

    await flags.edit(change)
    r.flag = off


async def retire(r: Rollout, flags: FlagSource) -> bool:
    """Remove the model's flag after promotion (only if it is still the one the rollout wrote); True when
    the document changed."""
    mine = r.flag

    def change(doc: dict[str, Any]) -> None:
        table = doc["flags"]
        if table.get(r.model) == mine:
            table.pop(r.model, None)
        _shadow_back(r, table)

    before = flags.flags.text
    await flags.edit(change)
    r.flag = None
    return flags.flags.text != before


def flag_in_force(flags: FlagSource, key: str) -> Any:
    """The definition of flag ``key`` in the document routing now (None when absent)."""
    text = flags.flags.text
    if not text:
        return None
    try:
        return json.loads(text).get("flags", {}).get(key)
    except (ValueError, AttributeError):
        return None
