"""The auth file in force: :class:`AuthPolicy` loads it and re-reads it when it (or its JWKS file)
changes. Both ports read it: the gRPC port's ``Auth`` link (``ortserve.edge.auth``) and the metrics
port's HTTP check (``ortserve.ops.metrics_auth``), which runs in the HTTP server's own threads.

Thread-safety: a reload builds a new :class:`Authenticator` and publishes it with one attribute
assignment; a reader takes ``policy.authenticator`` once per request and uses that object to the
end, so it sees the old file or the new one, never half of each. Reloads are serialized by a lock.
Imports no gRPC (the ``--workers`` supervisor, which forks, uses it for its metrics port).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ortserve.edge.authfile import AuthConfig, AuthFileError, load_auth_file
from ortserve.edge.principals import Authenticator
from ortserve.metrics import Metrics

__all__ = ["AuthPolicy"]

log = logging.getLogger("ortserve.auth")


def _stamp(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return ("missing",)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AuthPolicy:
    """The auth file as loaded, re-read when it (or its JWKS file) changes. A changed file that is
    refused leaves the last good one in force; ``on_change(outcome, old, new, message)`` hears of
    every change (outcome "ok" or "refused")."""

    def __init__(
        self,
        path: Path,
        metrics: Metrics | None = None,
        on_change: Callable[[str, AuthConfig | None, AuthConfig | None, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._metrics = metrics
        self._on_change = on_change or (lambda outcome, old, new, message: None)
        self._lock = threading.Lock()
        self.config = load_auth_file(self.path)  # at start: a bad file is fatal
        self.authenticator = Authenticator(self.config)
        self._stamps = self._current_stamps()
        self._count("ok")

    def _jwks_path(self) -> Path | None:
        jwt = self.config.file.jwt
        return self.path.parent / jwt.jwks if jwt is not None else None

    def _current_stamps(self) -> tuple:
        return (_stamp(self.path), _stamp(self._jwks_path()))

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.auth_reloads.labels(outcome).inc()

    def reload(self) -> bool:
        """Re-read the files if they changed; True when a new configuration took effect. From any
        thread: a call while another reload is under way returns False at once."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> bool:
        stamps = self._current_stamps()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        old = self.config
        try:
            config = load_auth_file(self.path)
            authenticator = Authenticator(config)
        except AuthFileError as e:
            log.error("auth file change refused, the last good one stays in force: %s", e)
            self._count("refused")
            self._on_change("refused", old, None, str(e))
            return False
        self.config = config
        self.authenticator = authenticator  # what readers take: one assignment publishes the new file
        self._stamps = self._current_stamps()  # the JWKS path may have changed with the file
        log.info(
            "auth file reloaded: %d keys, %d certificates",
            len(config.file.keys),
            len(config.file.certificates),
        )
        self._count("ok")
        self._on_change("ok", old, config, "")
        return True
