"""The HTTP API: useapi-shaped account, scheduler and job endpoints.

Errors are mapped here, in one place, to `{"error": …, "code": …}`; no stack
trace or secret ever reaches a response. Every route but `/health` and the
documentation (`/docs`, `/openapi.json`: the schema only, no data) demands
`Authorization: Bearer <API token>`. A path no route serves answers 404, whatever
the method; 405 is kept for a path that exists under another method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import re

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..connection import is_out_of_memory, store_full
from ..errors import DispatcherError, NoCapacity
from ..logging import get_logger
from ..secrets import api_tokens, token_matches, token_tenants
from . import accounts, compat_routes, docs, jobs, metrics, scheduler, service

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


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own 404 and 405, in the one error shape. A path that no route serves answers
    404 whatever the method, although the catch-all creates (`POST {prefix}/{operation:path}`)
    match every path and would make Starlette answer 405."""
    status = exc.status_code
    if status == 405 and not _served(request):
        status = 404
    message = {404: "Not found", 405: "Method not allowed"}.get(status, str(exc.detail))
    return error(message, status)


def create_app(dispatcher: Dispatcher) -> FastAPI:
    """Build the app around a `Dispatcher` (the app never builds its own core)."""
    app = FastAPI(
        title="dispatcher",
        version="0.1.0",
        description="Self-hosted multi-account load balancing for AI generation services, useapi.net-compatible.",
        docs_url=None, redoc_url=None,  # served from the package by `docs.install`: no CDN
        generate_unique_id_function=lambda route: route.name,  # operationIds: `runwayml_compat_create`…
    )
    app.state.dispatcher = dispatcher
    tokens = api_tokens(dispatcher.settings)
    tenants = token_tenants(dispatcher.settings)  # token -> its tenant (the "tenant:token" form)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if request.url.path not in OPEN_PATHS:
            header = request.headers.get("authorization", "")
            scheme, _, candidate = header.partition(" ")
            if scheme.lower() != "bearer" or not candidate or not token_matches(candidate.strip(), tokens):
                return error("Unauthorized", 401)
            request.state.tenant = tenants.get(candidate.strip())
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

    app.add_exception_handler(StarletteHTTPException, http_error)

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

    docs.install(app)
    for router in ROUTERS:  # the provider-shaped routes before the generic `POST {prefix}/{operation}`
        app.include_router(router)
    _declare_errors(app)
    return app


ROUTERS = (service.router, accounts.router, scheduler.router, compat_routes.router, jobs.router, metrics.router)


def _served(request: Request) -> bool:
    """Whether some route serves the request's path under another method (then 405 is the
    truth); the catch-all creates, whose `{operation:path}` matches any path, do not count.
    (The routers' own routes are read: they carry full paths, the routers have no prefix.)"""
    routes = [*request.app.router.routes, *(route for router in ROUTERS for route in router.routes)]
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str) or "{operation:path}" in path:
            continue
        if route.matches(request.scope)[0] == Match.PARTIAL:
            return True
    return False


BEARER = {"type": "http", "scheme": "bearer",
          "description": "An API token: a value of DISPATCHER_API_TOKENS, or the one in .dispatcher/api_token"}
ERROR_SCHEMA = {"type": "object", "required": ["error", "code"], "title": "Error",
                "properties": {"error": {"type": "string"}, "code": {"type": "integer"}}}
_COMMON_ERRORS = {"401": "Missing or wrong API token", "503": "Redis is unavailable: nothing was changed"}
_BODY_ERRORS = {"400": "Invalid request", "413": "Body larger than 1 MiB",
                "415": "Content-Type is neither JSON nor form data"}


def _declare_errors(app: FastAPI) -> None:
    """Make the OpenAPI document truthful: every operation needs the Bearer token (`bearerAuth`)
    unless it says `security: []` (`/health`); may answer the one error shape `{"error", "code"}`
    (`default`) and names the statuses every route shares; and every `{name}` of a path is
    declared as a path parameter (routes that read `request.path_params` have no typed parameter
    for FastAPI to document)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {"bearerAuth": BEARER}
        schema["security"] = [{"bearerAuth": []}]
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                declared = {p.get("name") for p in operation.get("parameters", ()) if p.get("in") == "path"}
                for name in re.findall(r"{([^}:]+)}", path):
                    if name not in declared:
                        operation.setdefault("parameters", []).append(
                            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None:  # FastAPI's; a bad parameter answers 400 here
                    responses.setdefault("400", {"description": "Invalid request", "content": body})
                codes = {} if operation.get("security") == [] else dict(
                    _COMMON_ERRORS, **(_BODY_ERRORS if "requestBody" in operation else {}))
                for code, text in codes.items():
                    responses.setdefault(code, {"description": text, "content": body})
                responses.setdefault("default", {"description": "Any other error", "content": body})
        for name in ("HTTPValidationError", "ValidationError"):  # only FastAPI's 422 named them
            components["schemas"].pop(name, None)
        return schema

    app.openapi = openapi
