"""The HTTP API: useapi-shaped account, scheduler and job endpoints.

Errors are mapped here, in one place, to `{"error": …, "code": …}`; no stack
trace or secret ever reaches a response. Every route but `/health` demands
`Authorization: Bearer <API token>`.
"""

from __future__ import annotations

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DispatcherError, NoCapacity
from ..logging import get_logger
from ..secrets import api_tokens, token_matches

log = get_logger()
OPEN_PATHS = frozenset({"/health"})


def error(message: str, code: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=code, headers=headers)


def create_app(dispatcher) -> FastAPI:
    """Build the app around a `Dispatcher` (the app never builds its own core)."""
    from . import accounts, jobs, scheduler

    app = FastAPI(
        title="dispatcher",
        version="0.1.0",
        description="Self-hosted multi-account load balancing for AI generation services, useapi.net-compatible.",
    )
    app.state.dispatcher = dispatcher
    tokens = api_tokens(dispatcher.settings)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if request.url.path not in OPEN_PATHS:
            header = request.headers.get("authorization", "")
            scheme, _, candidate = header.partition(" ")
            if scheme.lower() != "bearer" or not candidate or not token_matches(candidate.strip(), tokens):
                return error("Unauthorized", 401)
        try:
            return await call_next(request)
        except (redis.ConnectionError, redis.TimeoutError):
            return error("Redis is unavailable; nothing was changed. Retry shortly.", 503, {"Retry-After": "5"})

    @app.exception_handler(DispatcherError)
    async def dispatcher_error(request: Request, exc: DispatcherError):
        body = {"error": exc.message, "code": exc.status}
        if isinstance(exc, NoCapacity):
            body["executing"] = exc.accounts
        return JSONResponse(body, status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
        return error(message, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(f"Invalid request: {where} {first.get('msg', '')}".strip(), 400)

    @app.exception_handler(redis.RedisError)
    async def redis_down(request: Request, exc: redis.RedisError):
        log.warning("redis error", error=type(exc).__name__)
        return error("Redis is unavailable; nothing was changed. Retry shortly.", 503, {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unexpected error", path=request.url.path, error=type(exc).__name__)
        return error("Internal error", 500)

    @app.get("/health", include_in_schema=False)
    def health():
        return {"ok": True}

    app.include_router(accounts.router)
    app.include_router(scheduler.router)
    app.include_router(jobs.router)
    return app
