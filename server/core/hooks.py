"""Core hooks: observers of completed requests (shadow mirroring, access log; drift statistics,
payload logs and the feedback join plug in the same way).

    class Mine:
        def on_complete(self, event: Completed) -> None: ...   # on the event loop: be quick
    core.hooks.add(Mine())

A hook runs synchronously on the event loop right after each request is answered (or has
failed), so it must only take what it needs and hand heavy work to its own queue or thread.
A hook that raises is logged (once per hook and error type) and never affects the request or
the other hooks.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ortserve.core.request import Completed

__all__ = ["CoreHook", "Hooks"]

log = logging.getLogger("ortserve.hooks")


class CoreHook(Protocol):
    def on_complete(self, event: Completed) -> None: ...


class Hooks:
    """The registered hooks, called in order of registration."""

    def __init__(self) -> None:
        self._hooks: tuple[CoreHook, ...] = ()
        self._reported: set[tuple[int, type]] = set()

    def add(self, hook: CoreHook) -> None:
        self._hooks = (*self._hooks, hook)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def __iter__(self):
        return iter(self._hooks)

    def emit(self, event: Completed) -> None:
        for hook in self._hooks:
            try:
                hook.on_complete(event)
            except Exception as e:
                key = (id(hook), type(e))
                if key not in self._reported:
                    self._reported.add(key)
                    log.exception("core hook %s failed (reported once per error type): %s", hook, e)
