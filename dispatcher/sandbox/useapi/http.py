"""HTTP glue of the useapi.net emulation: the `{"error", "code"}` envelope, the Bearer-token
gate in front of every `/useapi/...` call, request bodies (JSON or form), and the sub-app."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from ..common import media_url
from ..model import BadRequest
from ..state import Reject
from .state import UseapiState

Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message, "code": status}, status_code=status, headers=headers)


def endpoint(fn: Endpoint) -> Endpoint:
    """Refusals (`Reject`) and bad input (`BadRequest`) become useapi's error envelope."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except Reject as exc:
            return error(exc.status, exc.message, exc.headers or None)
        except BadRequest as exc:
            return error(400, exc.message)

    wrapped.__name__ = getattr(fn, "__name__", "endpoint")
    return wrapped


def media(request: Request) -> Callable[[str], str]:
    return lambda name: media_url(request, name)


async def body(request: Request) -> dict[str, Any]:
    """A JSON object, or `multipart/form-data` / urlencoded fields (useapi accepts both)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def optional_str(data: dict[str, Any], name: str, limit: int = 1024) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Parameter {name} must be a string")
    if len(value) > limit:
        raise BadRequest(f"Parameter {name} is too long (at most {limit} characters)")
    return value


def max_jobs(data: dict[str, Any], high: int, *, required: bool) -> int | None:
    """`maxJobs` in 1..high (a form field arrives as text)."""
    value = data.get("maxJobs")
    if value is None or value == "":
        if required:
            raise BadRequest("Required param maxJobs is missing or empty")
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise BadRequest(f"Parameter maxJobs ({value}) must be an integer between 1 and {high}")
    return value


class TokenGate:
    """Pure ASGI middleware: a registered `Authorization: Bearer <token>` or 401; counts calls."""

    def __init__(self, app, ustate: UseapiState) -> None:
        self.app = app
        self.ustate = ustate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                token = rest.strip() if scheme.lower() == "bearer" else None
        if not token or token not in self.ustate.tokens:
            return await error(401, "Unauthorized")(scope, receive, send)
        self.ustate.counts["calls"] += 1
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None) or "Not found"
    return error(status, detail if status != 404 else f"Not found: {request.method} {request.url.path}")


async def _crash(request: Request, exc: Exception) -> Response:
    return error(500, f"Internal error: {type(exc).__name__}")


def sub_app(ustate: UseapiState, routes: list[BaseRoute]) -> Starlette:
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, ustate=ustate)],
                     exception_handlers={HTTPException: _http_error, Exception: _crash})
