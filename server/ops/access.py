"""``--access-log``: one log line per inference request, as a core hook."""

from __future__ import annotations

import logging

from ortserve.core import Completed
from ortserve.errors import quoted

# Client strings in the fields of an access line (ids joined on elsewhere are kept whole up to this)
FIELD_LIMIT = 256

__all__ = ["AccessLog"]


class AccessLog:
    """``--access-log``: a core hook that logs one line per inference request (request id, model,
    version, variant, API, outcome, duration, and the error's message when it failed)."""

    def __init__(self) -> None:
        self._log = logging.getLogger("ortserve.access")

    def on_complete(self, event: Completed) -> None:
        request, route, response = event.request, event.route, event.response
        version = response.version if response else (route.version.version if route else "")
        variant = response.variant if response else (route.variant if route else "")
        ms = event.duration_s * 1000
        message = str(event.error) if event.error is not None else ""
        self._log.info(
            "%s %s %s v%s %s %.2fms%s",
            request.api,
            quoted(request.request_id),
            quoted(request.model),
            version,
            event.outcome,
            ms,
            f" {message}" if message else "",
            extra={
                "request_id": request.request_id[:FIELD_LIMIT],
                "model": request.model[:FIELD_LIMIT],
                "version": version,
                "variant": variant,
                "api": request.api,
                "outcome": event.outcome,
                "duration_ms": round(ms, 3),
            },
        )
