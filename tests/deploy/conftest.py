"""The digits demo fixture of the monitoring tests, for the dashboard test's real server."""

from tests.server.monitor.conftest import demo_version

__all__ = ["demo_version"]
