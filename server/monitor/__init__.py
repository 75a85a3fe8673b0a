"""Monitoring: what happens to predictions after they are served.

Core hooks that observe completed requests and do their work off the event loop: ``DriftMonitor``
(inputs and predictions against each version's reference profile: PSI, binned KS, chi-square),
``FeedbackIndex`` (the core's feedback join: ground truth -> online accuracy per variant) and
``PayloadLog`` (sampled requests as CloudEvents JSON lines). ``ortserve.monitor.tracing`` (imported
only with ``--tracing``) implements the core's tracing seam with OpenTelemetry. Statistics are in
``ortserve.stats`` (a base module: the rollout judge uses them too). Alert rules and a Grafana
dashboard over these metrics live in ``deploy/prometheus/``.

May import: ``ortserve.core``, ``ortserve.repository`` and the base modules; never ``rollout``,
``edge`` or ``ops`` (``ops`` wires it in).
"""

from ortserve.monitor.drift import DriftMonitor
from ortserve.monitor.feedback import FeedbackIndex, prediction_of
from ortserve.monitor.payload import PayloadLog

__all__ = ["DriftMonitor", "FeedbackIndex", "PayloadLog", "prediction_of"]
