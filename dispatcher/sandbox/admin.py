"""Admin API under `/_sandbox`: health, users, reset, token expiry, stats, media."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import media
from .common import json_body
from .model import ALIASES, BadRequest
from .state import Sandbox


def _error(status: int, message: str, code: str) -> Response:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def routes(sb: Sandbox) -> list[Route]:
    def guarded(fn):
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except BadRequest as exc:
                return _error(400, exc.message, exc.code)
            except KeyError as exc:
                return _error(404, f"unknown user {exc.args[0] if exc.args else ''}", "not_found")

        wrapped.__name__ = fn.__name__
        return wrapped

    def ident(params: dict[str, Any]) -> tuple[str, str]:
        provider = params["provider"]
        return ALIASES.get(provider, provider), params["id"]

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def add_user(request: Request) -> Response:
        user, _ = sb.upsert_user(await json_body(request))
        return JSONResponse(user.view(), status_code=201)

    async def patch_user(request: Request) -> Response:
        user = sb.patch_user(*ident(request.path_params), await json_body(request))
        return JSONResponse(user.view())

    async def get_user(request: Request) -> Response:
        return JSONResponse(sb.get_user(*ident(request.path_params)).view())

    async def reset(request: Request) -> Response:
        seed = (await json_body(request)).get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise BadRequest("seed must be an integer", "invalid_seed")
        sb.reset(seed)
        return JSONResponse({"ok": True})

    async def expire(request: Request) -> Response:
        body = await json_body(request)
        provider, uid = body.get("provider"), body.get("id")
        if not isinstance(provider, str) or not isinstance(uid, str):
            raise BadRequest("provider and id are required", "invalid_request")
        sb.expire_tokens(ALIASES.get(provider, provider), uid)
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> Response:
        provider = request.query_params.get("provider")
        return JSONResponse(sb.stats(ALIASES.get(provider, provider) if provider else None))

    async def serve_media(request: Request) -> Response:
        name = request.path_params["name"]
        found = sb.uploads.get(name) or media.builtin(name)
        if found is None:
            return _error(404, f"no medium {name}", "not_found")
        data, content_type = found
        return Response(data, media_type=content_type, headers={"Cache-Control": "public, max-age=3600"})

    p = "/_sandbox"
    return [
        Route(f"{p}/health", health, methods=["GET"]),
        Route(f"{p}/users", guarded(add_user), methods=["POST"]),
        Route(f"{p}/users/{{provider}}/{{id:path}}", guarded(patch_user), methods=["PATCH"]),
        Route(f"{p}/users/{{provider}}/{{id:path}}", guarded(get_user), methods=["GET"]),
        Route(f"{p}/reset", guarded(reset), methods=["POST"]),
        Route(f"{p}/tokens/expire", guarded(expire), methods=["POST"]),
        Route(f"{p}/stats", stats, methods=["GET"]),
        Route(f"{p}/media/{{name}}", serve_media, methods=["GET"]),
    ]
