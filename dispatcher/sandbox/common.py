"""HTTP glue shared by the provider route modules: error shapes, auth, faults, bodies."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .model import BadRequest, User
from .state import Reject, Sandbox

Endpoint = Callable[[Request], Awaitable[Response]]


class Dialect:
    """How one provider speaks: where the token is, its idempotency header, its body shapes."""

    provider = ""
    token_header = "authorization"
    bearer = True
    idem_header = "idempotency-key"

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def ok_body(self, data: Any) -> Any:
        return data

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(self.error_body(status, message), status_code=status, headers=headers)

    def ok(self, data: Any, status: int = 200) -> Response:
        return JSONResponse(self.ok_body(data), status_code=status)

    def token(self, request: Request) -> str | None:
        value = request.headers.get(self.token_header)
        if value and self.bearer:
            scheme, _, rest = value.partition(" ")
            return rest.strip() if scheme.lower() == "bearer" else None
        return value

    def idem_key(self, request: Request) -> str | None:
        return request.headers.get(self.idem_header) or None


def endpoint(dialect: Dialect, fn: Endpoint) -> Endpoint:
    """Wrap a handler so Reject / BadRequest become the provider's error shape."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except Reject as exc:
            return dialect.error(exc.status, exc.message, exc.headers)
        except BadRequest as exc:
            return dialect.error(400, exc.message)

    wrapped.__name__ = getattr(fn, "__name__", "endpoint")
    return wrapped


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise BadRequest("body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", "invalid_json")
    return body


def authenticate(sb: Sandbox, dialect: Dialect, request: Request) -> User:
    return sb.authenticate(dialect.provider, dialect.token(request))


async def apply_faults(sb: Sandbox, user: User) -> None:
    """Injected latency and failures for create/poll requests (decided before any effect)."""
    slow, kind = sb.draw_faults(user)
    if slow > 0:
        await asyncio.sleep(slow)
    if kind is not None:
        raise sb.fault_reject(user, kind)


def base_url(request: Request) -> str:
    """`scheme://host[:port]` the client used (Host header), without Starlette's URL parsing."""
    scope = request.scope
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scope.get('scheme', 'http')}://{value.decode('latin-1')}"
    host, port = scope.get("server") or ("127.0.0.1", 80)
    return f"{scope.get('scheme', 'http')}://{host}:{port}"


def media_url(request: Request, name: str) -> str:
    return f"{base_url(request)}/_sandbox/media/{name}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def store_upload(sb: Sandbox, request: Request, default_ext: str) -> str:
    """Keep the raw body as an uploaded medium; returns its media name."""
    data = await request.body()
    name = request.query_params.get("name") or ""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else default_ext
    if not ext.isalnum() or len(ext) > 8:
        ext = default_ext
    content_type = request.headers.get("content-type") or "application/octet-stream"
    return sb.store_upload(data, content_type, ext)
