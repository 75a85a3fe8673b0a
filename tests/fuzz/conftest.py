"""Budgets of the property-based tests. The suite (and CI) runs a small one; ``make fuzz`` runs
at least 10,000 cases per target (``ORTSERVE_FUZZ=fuzz``). Both are deterministic per run seed
and never time a case out (these machines are shared)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("ORTSERVE_FUZZ", "ci"))
