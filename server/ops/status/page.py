"""The status page's own thread: every ``interval`` seconds it samples the metrics into the history and asks
for a fresh state snapshot; a page request renders from the latest of both and never waits for the server.

    page = StatusPage(registry, state=lambda: snapshot(), interval=5, window=600)
    page.start(); page.html(); page.json(); page.stop()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from ortserve.ops.status.history import MetricsHistory
from ortserve.ops.status.render import Panel, points_json, render_page
from ortserve.ops.status.state import ServerState

__all__ = ["StatusPage"]

log = logging.getLogger("ortserve.status")


class StatusPage:
    def __init__(
        self,
        registry: CollectorRegistry,
        state: Callable[[], ServerState],
        *,
        interval: float = 5.0,
        window: float = 600.0,
        panels: Sequence[Panel] = (),
        restrict: bool = True,
    ) -> None:
        self.history = MetricsHistory(registry, interval, window, restrict=restrict)
        self.interval = interval
        self.window = window
        self.panels = list(panels)  # sections others add (drift, rollouts...): () -> (title, HTML)
        self._state_source = state
        self.state: ServerState | None = None  # replaced whole, never changed: readers need no lock
        self._cached: tuple[tuple[int, int], str] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def refresh(self) -> int:
        """Seconds between the browser's reloads: the sampling interval, at least 2 and at most 60."""
        return min(60, max(2, math.ceil(self.interval)))

    def tick(self) -> None:
        """One sample of the metrics and the state (the thread's loop body; tests call it directly)."""
        try:
            self.history.sample()
        except Exception:
            log.exception("status page: sampling the metrics failed")
        try:
            self.state = self._state_source()
        except Exception as e:  # e.g. the event loop too busy to answer in time: keep the last snapshot
            if not self._stop.is_set():
                log.warning("status page: no fresh state snapshot (%s: %s)", type(e).__name__, e)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ortserve-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._wake.wait(self.interval)
            self._wake.clear()

    def poke(self) -> None:
        """Sample now rather than at the next interval (e.g. once the server has loaded its models)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop sampling. Not joined: the thread may be waiting for a snapshot from the event loop that is
        calling this; it is a daemon and ends at its next wake-up."""
        self._stop.set()
        self._wake.set()

    def html(self) -> str:
        """The page, rendered again only when a sample or a snapshot came in since the last rendering (many
        browsers refreshing cost one rendering per interval); panels others add are always rendered."""
        key = (self.history.samples, id(self.state))
        cached = self._cached
        if not self.panels and cached is not None and cached[0] == key:
            return cached[1]
        page = self._render()
        self._cached = (key, page)
        return page

    def _render(self) -> str:
        return render_page(
            self.state,
            self.history.series(),
            window=self.window,
            refresh=self.refresh,
            shadow=self.history.shadow(),
            drift=self.history.drift,
            panels=self.panels,
            levels=self.history.levels(),
        )

    def json(self) -> str:
        state = self.state
        series = self.history.series()
        doc = {
            "state": dataclasses.asdict(state) if state is not None else None,
            "interval_s": self.interval,
            "window_s": self.window,
            "generated": time.time(),
            "traffic": [
                {
                    "model": model,
                    "version": version,
                    "variant": variant,
                    "last_minute": points_json((s.last,), s.now)[0],
                    "requests_in_window": s.requests,
                    "points": points_json(s.points, s.now),
                }
                for (model, version, variant), s in series.items()
            ],
            "reliability": dict(zip(("now", "last_minute"), map(_levels_json, self.history.levels()))),
            "drift": [
                {"model": model, "version": version, **values}
                for (model, version), values in sorted(self.history.drift.items())
            ],
            "shadow": [
                {
                    "model": model,
                    "primary_version": primary,
                    "shadow_version": shadow,
                    **dataclasses.asdict(sh),
                }
                for (model, primary, shadow), sh in self.history.shadow().items()
            ],
        }
        return json.dumps(doc, separators=(",", ":"))


def _levels_json(levels: dict[tuple[str, str], float]) -> dict[str, float]:
    """``{"ortserve_admission_rejected{bytes}": 3.0, "ortserve_inflight_request_bytes": 0.0, ...}``"""
    return {f"{family}{{{label}}}" if label else family: v for (family, label), v in sorted(levels.items())}
