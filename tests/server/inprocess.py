"""The real server in process: start an ``App`` (every layer, on a free loopback port), run a test's body
against it over gRPC, stop it however the body ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from ortserve.edge.interceptors import Interceptor
from ortserve.ops.app import App
from ortserve.ops.settings import Settings

__all__ = ["run_in_app"]


def run_in_app(
    settings: Settings, body: Callable[[App, str], Awaitable[None]], *, links: Sequence[Interceptor] = ()
) -> None:
    """Start ``App(settings, links=links)``, await ``body(app, target)``, shut the app down."""

    async def main() -> None:
        app = App(settings, links=links)
        await app.startup()
        try:
            await body(app, f"127.0.0.1:{app.port}")
        finally:
            await app.shutdown()

    asyncio.run(main())
