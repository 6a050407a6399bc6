"""Account endpoints, one set per provider, exactly where useapi serves them:
`POST {prefix}/accounts[/{id}]`, `GET {prefix}/accounts[/{id}]`, `DELETE {prefix}/accounts/{id}`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..providers import REGISTRY, ProviderSpec
from ..providers.ids import ID_MAX
from . import models
from .body import read_object

router = APIRouter()


def _account_body_schema(spec: ProviderSpec) -> dict:
    props = {name: {"type": "string"} for name in spec.credential_fields}
    if spec.id_field in props:  # it becomes the `{id}` of the account's URL: the rule is checked (400)
        props[spec.id_field].update(maxLength=ID_MAX, description=f"{spec.id_rule}, at most {ID_MAX} characters")
    for name in spec.header_fields:
        props[name]["description"] = "sent upstream in an HTTP header: printable ASCII only (400 otherwise)"
    low, high = spec.max_jobs
    props["maxJobs"] = {"type": "integer", "minimum": low, "maximum": high}
    for name, span in (("maxPerMinute", "60 s"), ("maxPerDay", "24 h")):
        props[name] = {"type": "integer", "minimum": 1,
                       "description": f"optional: at most this many generations started on the account in any {span}"}
    schema = {"type": "object", "properties": props, "required": [*spec.credential_fields, "maxJobs"]}
    # JSON only in the document (JSON and multipart together break generated clients: their
    # issue #1451); form data is still accepted at run time, as useapi accepts it
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _routes(spec: ProviderSpec) -> None:
    base = f"{spec.api_prefix}/accounts"
    tags = [spec.title]
    idp = spec.id_field

    async def create(request: Request):
        body = await read_object(request)
        d = request.app.state.dispatcher
        return await run_in_threadpool(d.upsert_account, spec.name, body, None)

    async def list_all(request: Request):
        return await run_in_threadpool(request.app.state.dispatcher.list_accounts, spec.name)

    async def create_one(request: Request):
        body = await read_object(request)
        path_id = request.path_params[idp]
        return await run_in_threadpool(request.app.state.dispatcher.upsert_account, spec.name, body, path_id)

    async def get_one(request: Request):
        return await run_in_threadpool(request.app.state.dispatcher.account_view, spec.name, request.path_params[idp])

    async def delete_one(request: Request, remote: bool = False):
        """`?remote=true`: also delete it at useapi.net (a provider reached through useapi)."""
        await run_in_threadpool(lambda: request.app.state.dispatcher.delete_account(
            spec.name, request.path_params[idp], remote=remote))
        return {"deleted": request.path_params[idp], **({"remote": True} if remote else {})}

    extra = _account_body_schema(spec)
    summary = f"Create or update {spec.title} account configuration"
    one = {200: {"model": models.account(spec)}}
    router.add_api_route(base, create, methods=["POST"], tags=tags, summary=summary, openapi_extra=extra,
                         name=f"{spec.name}_create_account", responses=one)
    router.add_api_route(base, list_all, methods=["GET"], tags=tags, name=f"{spec.name}_list_accounts",
                         summary=f"Retrieve {spec.title} accounts configuration",
                         responses={200: {"model": models.accounts(spec)}})
    if not spec.id_from_login:
        router.add_api_route(f"{base}/{{{idp}}}", create_one, methods=["POST"], tags=tags, summary=summary,
                             openapi_extra=extra, name=f"{spec.name}_upsert_account", responses=one)
    router.add_api_route(f"{base}/{{{idp}}}", get_one, methods=["GET"], tags=tags, name=f"{spec.name}_get_account",
                         summary=f"Retrieve {spec.title} account configuration", responses=one)
    router.add_api_route(f"{base}/{{{idp}}}", delete_one, methods=["DELETE"], tags=tags,
                         name=f"{spec.name}_delete_account", summary=f"Delete {spec.title} account configuration")


for _spec in REGISTRY.values():
    _routes(_spec)
