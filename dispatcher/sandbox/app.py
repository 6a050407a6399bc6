"""`build_app`: the Starlette application of the simulated upstream."""

from __future__ import annotations

import time
from typing import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware

from . import admin, upstreams, useapi
from .state import Sandbox


class _CountRequests:
    """Pure ASGI middleware: counts every non-admin HTTP request in the sandbox stats."""

    def __init__(self, app, sb: Sandbox) -> None:
        self.app = app
        self.sb = sb

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith("/_sandbox"):
            self.sb.counts["requests"] += 1
        await self.app(scope, receive, send)


def build_app(clock: Callable[[], float] = time.time, *, seed: int | None = None) -> Starlette:
    """A fresh sandbox (own state, own JWT secret) as an ASGI app; `app.state.sandbox` is the state."""
    sb = Sandbox(clock=clock, seed=seed)
    routes = [*upstreams.all_routes(sb), *admin.routes(sb), useapi.mount(sb)]
    app = Starlette(routes=routes, middleware=[Middleware(_CountRequests, sb=sb)])
    app.state.sandbox = sb
    return app
