"""useapi.net account routes: `GET /v2/account`, and per provider `POST /accounts[/{id}]`
(logs in against the sandbox's emulation of that provider), `GET /accounts`,
`GET /accounts/{id}`, `DELETE /accounts/{id}`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..model import BadRequest, User
from ..state import Reject
from . import sessions
from .http import body, endpoint, max_jobs, optional_str
from .render import account_view
from .specs import ACCOUNT_EMAIL, SPECS, Spec
from .state import Account, UseapiState


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Required param {name} is missing or empty")
    return value


def _same_as_path(spec: Spec, value: str, path_id: str | None) -> None:
    if path_id is not None and value != path_id:
        raise BadRequest(f"{spec.id_field} value specified in the request body must match the "
                         f"{spec.id_field} value specified in the URL path")


def _login(ustate: UseapiState, spec: Spec, data: dict[str, Any],
           path_id: str | None) -> tuple[str, User, str, dict[str, Any], dict[str, Any]]:
    """(account id, provider user, secret, session, extra) after logging in with the body's credentials."""
    sb = ustate.sb
    if spec.provider == "riffusion":
        cookie = _required(data, "cookie")
        user, session = sessions.login_riffusion(sb, cookie)
        return user.id, user, cookie, session, {}
    if spec.provider == "minimax":
        account, token = _required(data, "account"), _required(data, "token")
        _same_as_path(spec, account, path_id)
        url = optional_str(data, "url", 4096)
        user, session = sessions.login_minimax(sb, account, token)
        return account, user, token, session, ({"url": url} if url else {})
    email, password = _required(data, "email"), _required(data, "password")
    _same_as_path(spec, email, path_id)
    user, session = sessions.login_password(sb, spec.provider, email, password)
    return email, user, password, session, {}


def _account_routes(ustate: UseapiState, spec: Spec) -> list[Route]:
    sb = ustate.sb

    def find(ident: str) -> Account:
        account = ustate.accounts[spec.provider].get(ident)  # looked up per call: a reset replaces it
        if account is None:
            raise Reject(404, spec.not_configured(ident))
        sessions.touch(sb, account)
        return account

    async def post(request: Request) -> Response:
        data = await body(request)
        jobs = max_jobs(data, spec.max_jobs, required=True)
        ident, user, secret, session, extra = _login(ustate, spec, data, request.path_params.get("ident"))
        account = ustate.save(Account(spec, ident, user, jobs, secret, session, sb.clock(), extra=extra))
        return JSONResponse(account_view(account), status_code=spec.created_status)

    async def list_all(request: Request) -> Response:
        table = ustate.accounts[spec.provider]
        if not table:
            raise Reject(404, spec.not_configured())
        return JSONResponse({ident: account_view(find(ident)) for ident in sorted(table)})

    async def get_one(request: Request) -> Response:
        return JSONResponse(account_view(find(request.path_params["ident"])))

    async def delete(request: Request) -> Response:
        ident = request.path_params["ident"]
        if not ustate.delete(spec.provider, ident):
            raise Reject(404, spec.not_configured(ident))
        return Response(status_code=204)

    p = f"{spec.base}/accounts"
    post_path = f"{p}/{{ident}}" if spec.id_in_path else p
    return [
        Route(post_path, endpoint(post), methods=["POST"]),
        Route(p, endpoint(list_all), methods=["GET"]),
        Route(f"{p}/", endpoint(list_all), methods=["GET"]),
        Route(f"{p}/{{ident}}", endpoint(get_one), methods=["GET"]),
        Route(f"{p}/{{ident}}", endpoint(delete), methods=["DELETE"]),
    ]


def routes(ustate: UseapiState) -> list[Route]:
    async def account_info(request: Request) -> Response:
        return JSONResponse({"email": ACCOUNT_EMAIL, "name": "sandbox", "verified": True})

    out = [Route("/v2/account", endpoint(account_info), methods=["GET"])]
    for spec in SPECS.values():
        out += _account_routes(ustate, spec)
    return out
