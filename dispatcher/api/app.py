"""The HTTP API: useapi-shaped account, scheduler and job endpoints.

Errors are mapped here, in one place, to `{"error": …, "code": …}`; no stack
trace or secret ever reaches a response. Every route but `/health` demands
`Authorization: Bearer <API token>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import re

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..connection import is_out_of_memory, store_full
from ..errors import DispatcherError, NoCapacity
from ..logging import get_logger
from ..secrets import api_tokens, token_matches
from . import accounts, compat_routes, jobs, metrics, scheduler

if TYPE_CHECKING:
    from dispatcher.client import Dispatcher

log = get_logger()
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})  # docs: schema only


def error(message: str, code: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=code, headers=headers)


async def redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
    """Every Redis error the routes let through: full (507), unavailable (503), anything else (500)."""
    if is_out_of_memory(exc):  # maxmemory reached (noeviction): the write was refused, nothing changed
        log.warning("redis out of memory", path=request.url.path)
        return error(store_full(request.app.state.dispatcher.core.r).message, 507)
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)):
        log.warning("redis unavailable", error=type(exc).__name__)
        return error("Redis is unavailable; nothing was changed. Retry shortly.", 503, {"Retry-After": "5"})
    log.error("redis error", path=request.url.path, error=type(exc).__name__)
    return error("Internal error", 500)


def create_app(dispatcher: Dispatcher) -> FastAPI:
    """Build the app around a `Dispatcher` (the app never builds its own core)."""
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

    app.add_exception_handler(redis.RedisError, redis_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unexpected error", path=request.url.path, error=type(exc).__name__)
        return error("Internal error", 500)

    @app.get("/health", include_in_schema=False)
    def health():
        return {"ok": True}

    app.include_router(accounts.router)
    app.include_router(scheduler.router)
    app.include_router(compat_routes.router)  # before the generic `POST {prefix}/{operation}`
    app.include_router(jobs.router)
    app.include_router(metrics.router)
    _declare_errors(app)
    return app


ERROR_SCHEMA = {"type": "object", "required": ["error", "code"], "title": "Error",
                "properties": {"error": {"type": "string"}, "code": {"type": "integer"}}}
_COMMON_ERRORS = {"401": "Missing or wrong API token", "503": "Redis is unavailable: nothing was changed"}
_BODY_ERRORS = {"400": "Invalid request", "413": "Body larger than 1 MiB",
                "415": "Content-Type is neither JSON nor form data"}


def _declare_errors(app: FastAPI) -> None:
    """Make the OpenAPI document truthful: every operation may answer the one error shape
    `{"error", "code"}` (`default`) and names the statuses every route shares; and every
    `{name}` of a path is declared as a path parameter (routes that read `request.path_params`
    have no typed parameter for FastAPI to document)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                declared = {p.get("name") for p in operation.get("parameters", ()) if p.get("in") == "path"}
                for name in re.findall(r"{([^}:]+)}", path):
                    if name not in declared:
                        operation.setdefault("parameters", []).append(
                            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
                responses = operation.setdefault("responses", {})
                codes = dict(_COMMON_ERRORS, **(_BODY_ERRORS if "requestBody" in operation else {}))
                for code, text in codes.items():
                    responses.setdefault(code, {"description": text, "content": body})
                responses.setdefault("default", {"description": "Any other error", "content": body})
        return schema

    app.openapi = openapi
