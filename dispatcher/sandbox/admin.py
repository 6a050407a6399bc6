"""Admin API under `/_sandbox`: health, users, reset, token expiry, stats, media, and the
useapi.net emulation's controls (API tokens, an account's pending error, outside jobs)."""

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


def guarded(fn):
    """Bad input -> 400, unknown user or account -> 404, as `{"error", "code"}`."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except BadRequest as exc:
            return _error(400, exc.message, exc.code)
        except KeyError as exc:
            name = exc.args[0] if exc.args else ""
            message = name if str(name).startswith("unknown ") else f"unknown user {name}"
            return _error(404, message, "not_found")

    wrapped.__name__ = fn.__name__
    return wrapped


def routes(sb: Sandbox) -> list[Route]:
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
        *_useapi_routes(sb, p),
    ]


def _useapi_routes(sb: Sandbox, p: str) -> list[Route]:
    """Controls of the api.useapi.net emulation (`sandbox/useapi`), whose state is `sb.plugins["useapi"]`:
    register an API token, set or clear an account's pending `error`, occupy slots with outside jobs."""

    def useapi():
        return sb.plugins["useapi"]

    async def token(request: Request) -> Response:
        useapi().add_token((await json_body(request)).get("token"))
        return JSONResponse({"ok": True}, status_code=201)

    async def error(request: Request) -> Response:
        body = await json_body(request)
        if "error" not in body:
            raise BadRequest("error is required (a string, or null to clear it)", "invalid_error")
        useapi().set_error(body.get("provider"), body.get("account"), body["error"])
        return JSONResponse({"ok": True})

    async def busy(request: Request) -> Response:
        body = await json_body(request)
        useapi().set_busy(body.get("provider"), body.get("account"), body.get("jobs"), body.get("seconds"))
        return JSONResponse({"ok": True})

    return [
        Route(f"{p}/useapi-tokens", guarded(token), methods=["POST"]),
        Route(f"{p}/useapi-accounts/error", guarded(error), methods=["POST"]),
        Route(f"{p}/useapi-busy", guarded(busy), methods=["POST"]),
    ]
