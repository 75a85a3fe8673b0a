"""Rollout: routing traffic between a model's versions with feature flags.

Owns the flags document (OpenFeature flagd JSON: ``flags``), its JSONLogic targeting rules
(``jsonlogic``) and flagd's ``fractional`` bucketing (``fractional``), the flag-driven routing
strategy the core uses (``FlagRouter``), the flags file's life (``FlagSource``: load, reload,
replace through Admin) and shadow traffic (``ShadowMirror``, a core hook).

May import: ``ortserve.core``, ``ortserve.repository`` and the base modules. Never gRPC,
``edge`` or ``ops``.
"""

from ortserve.rollout.flags import SHADOW_SUFFIX, Flag, FlagSet, check_versions, parse_flags
from ortserve.rollout.router import OVERRIDE_ATTRIBUTE, FlagRouter
from ortserve.rollout.shadow import ShadowMirror
from ortserve.rollout.source import FlagSource

__all__ = [
    "OVERRIDE_ATTRIBUTE",
    "SHADOW_SUFFIX",
    "Flag",
    "FlagRouter",
    "FlagSet",
    "FlagSource",
    "ShadowMirror",
    "check_versions",
    "parse_flags",
]
