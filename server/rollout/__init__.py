"""Rollout: routing traffic between a model's versions with feature flags, and automated rollouts.

Owns the flags document (OpenFeature flagd JSON: ``flags``), its JSONLogic targeting rules
(``jsonlogic``) and flagd's ``fractional`` bucketing (``fractional``), the flag-driven routing
strategy the core uses (``FlagRouter``), the flags file's life (``FlagSource``: load, reload,
replace through Admin, edit), shadow traffic (``ShadowMirror``, a core hook), and the rollout
controller: the spec (``spec``), what each arm did (``Collector``, a core hook; ``tally``), the judge
(``judge``: anytime-valid sequential tests), one look at a rollout (``progress``), moving traffic
(``traffic``), the record and its files (``state``, ``store``), ``--workers`` (``share``), the A/B report
(``report``) and the ``RolloutController`` over them.

May import: ``ortserve.core``, ``ortserve.repository`` and the base modules. Never gRPC,
``edge`` or ``ops``.
"""

from ortserve.rollout.collector import Collector
from ortserve.rollout.controller import RolloutController
from ortserve.rollout.flags import SHADOW_SUFFIX, Flag, FlagSet, check_versions, parse_flags
from ortserve.rollout.report import build_report
from ortserve.rollout.router import OVERRIDE_ATTRIBUTE, FlagRouter
from ortserve.rollout.shadow import ShadowMirror
from ortserve.rollout.source import FlagSource
from ortserve.rollout.spec import RolloutSpec, parse_spec
from ortserve.rollout.state import STATES
from ortserve.rollout.store import RolloutStore

__all__ = [
    "OVERRIDE_ATTRIBUTE",
    "SHADOW_SUFFIX",
    "STATES",
    "Collector",
    "Flag",
    "FlagRouter",
    "FlagSet",
    "FlagSource",
    "RolloutController",
    "RolloutSpec",
    "RolloutStore",
    "ShadowMirror",
    "build_report",
    "check_versions",
    "parse_flags",
    "parse_spec",
]
