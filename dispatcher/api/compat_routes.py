"""Mounts every provider's useapi-shaped job routes, as its folder declares them (`Shape.routes`).

The work behind each kind of route is the same for every provider (`compat.py`); only the
paths, the id's name and the answers differ, and those come from the provider's folder.

Request bodies are declared as JSON only in the OpenAPI document (a body offered as both JSON
and multipart breaks generated clients, openapi-python-client's issue #1451); form data is still
accepted at run time, as useapi accepts it.
"""

from __future__ import annotations

from typing import Union

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..errors import NotFound, ValidationError
from ..providers import ABSENT, ACCOUNTS, CANCEL, CREATE, LIST, STATUS, UPLOAD, REGISTRY, ProviderSpec, Route
from . import compat
from . import models
from .jobs import PRIORITY_SCHEMA, REPLY_QUEUE_SCHEMA
from .body import raw_body, read_object

router = APIRouter()
RESERVED = ("accounts", "scheduler")  # not operations: the account and scheduler routes own them


def _create_schema(spec: ProviderSpec) -> dict:
    low, high = spec.max_jobs
    props = {
        spec.id_field: {"type": "string", "description": "pin the generation to this account"},
        "replyUrl": {"type": "string", "maxLength": 1024}, "replyRef": {"type": "string", "maxLength": 1024},
        "replyQueue": REPLY_QUEUE_SCHEMA,
        "wait": {"type": "boolean", "description": "false: answer 429 instead of waiting for a free slot"},
        "maxJobs": {"type": "integer", "minimum": low, "maximum": high, "description": "validated, not applied"},
        "priority": PRIORITY_SCHEMA,
    }
    schema = {"type": "object", "additionalProperties": True, "properties": props,
              "description": "The upstream's own fields (prompt, assets…) and these; form data is accepted too"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _upload_schema(spec: ProviderSpec) -> dict:
    params = [{"name": spec.id_field, "in": "query", "required": False, "schema": {"type": "string"}}]
    if spec.shape.upload_name:
        params.append({"name": "name", "in": "query", "required": False, "schema": {"type": "string"}})
    content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {"parameters": params, "requestBody": {"required": True, "content": content,
                                                  "description": "The file's bytes; send its own Content-Type "
                                                                 "(image/jpeg…): it is kept, with its name"}}


def _path_param(name: str, where: str = "path") -> dict:
    return {"parameters": [{"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}]}


def _status_model(spec: ProviderSpec, route: Route):
    """What the route answers: the status object of its shape; a create whose operation is free
    answers the main shape's or one of its variants' (MiniMax: a video or an image)."""
    if route.kind == CREATE and route.operation is None and spec.shape.variants:
        return Union[(spec.shape.model, *(v.model for _, v in spec.shape.variants))]  # noqa: UP007
    return spec.shape.for_operation(route.operation).model


def _create(spec: ProviderSpec, route: Route):
    async def create(request: Request):
        if route.operation is not None:
            operation = route.operation
        else:
            operation = request.path_params["operation"].strip("/")
            if operation.split("/")[0] in RESERVED:
                raise NotFound("Not found")
            operation += route.suffix
        spec.check_operation(operation)  # 404 naming the operations, before anything is read
        body = await read_object(request)
        return await run_in_threadpool(compat.create, request.app.state.dispatcher, spec, operation, body,
                                       request.query_params.get("wait"), getattr(request.state, "tenant", None))

    extra = _create_schema(spec)
    if route.operation is None:
        extra = {**extra, **_path_param("operation")}
    return create, "POST", extra


def _by_id(spec: ProviderSpec, route: Route):
    work = compat.status if route.kind == STATUS else compat.cancel
    shape = spec.shape.for_operation(route.operation)

    async def endpoint(request: Request):
        return await run_in_threadpool(work, request.app.state.dispatcher, spec, request.path_params[shape.id_key],
                                       shape)

    return endpoint, ("GET" if route.kind == STATUS else "DELETE"), _path_param(shape.id_key)


def _list(spec: ProviderSpec, route: Route):
    async def listing(request: Request):
        job_id = request.query_params.get("id")
        if not job_id:
            raise ValidationError(f"Parameter id is required: the {spec.shape.id_key} a create returned")
        return [await run_in_threadpool(compat.status, request.app.state.dispatcher, spec, job_id)]

    return listing, "GET", _path_param("id", "query")


def _upload(spec: ProviderSpec, route: Route):
    async def upload(request: Request):
        data = await raw_body(request, compat.UPLOAD_LIMIT)
        content_type = compat.media_type(request)
        account, result = await run_in_threadpool(
            compat.upload, request.app.state.dispatcher, spec, request.query_params.get(spec.id_field), data,
            compat.file_name(request, content_type), content_type)
        return spec.shape.upload_answer(spec.name, account, result)

    return upload, "POST", _upload_schema(spec)


def _absent(spec: ProviderSpec, route: Route):
    async def absent(request: Request):
        raise NotFound(f"{request.method} {request.url.path} is not served here: {route.summary}")

    return absent, route.method, {}


def _accounts(spec: ProviderSpec, route: Route):
    async def listing(request: Request):
        return await run_in_threadpool(request.app.state.dispatcher.list_accounts, spec.name)

    return listing, "GET", {}


_KINDS = {CREATE: _create, STATUS: _by_id, CANCEL: _by_id, LIST: _list, UPLOAD: _upload, ABSENT: _absent,
          ACCOUNTS: _accounts}
_TWINS = (LIST, UPLOAD, ABSENT)  # answered with and without a trailing slash


def _responses(spec: ProviderSpec, route: Route) -> dict:
    if route.kind in (CREATE, STATUS, CANCEL):
        return {200: {"model": _status_model(spec, route)}}
    if route.kind == LIST:
        return {200: {"model": list[spec.shape.model]}}
    if route.kind == ACCOUNTS:
        return {200: {"model": models.accounts(spec)}}
    return {}


def mount(spec: ProviderSpec) -> None:
    """Add one provider's routes; the document shows each once (as useapi spells its path)."""
    for route in spec.shape.routes:
        endpoint, method, extra = _KINDS[route.kind](spec, route)
        shown = route.path
        twin = shown[:-1] if shown.endswith("/") else shown + "/"
        for path in (shown, twin) if route.kind in _TWINS else (shown,):
            router.add_api_route(spec.api_prefix + path, endpoint, methods=[method], tags=[spec.title],
                                 summary=route.summary if route.kind != ABSENT else None,
                                 name=f"{spec.name}_compat_{_suffix(route)}{'' if path == shown else '_twin'}",
                                 openapi_extra=extra, responses=_responses(spec, route),
                                 include_in_schema=path == shown and route.kind != ABSENT)


def _suffix(route: Route) -> str:
    """The route's name after `<provider>_compat_` (its OpenAPI operationId, and the function's
    name in generated clients)."""
    if route.kind == CREATE and route.operation is not None:
        return route.operation.replace("/", "_").replace("-", "_")
    if route.kind in (STATUS, CANCEL) and route.operation is not None:
        return f"{route.kind}_{route.operation.split('/')[0]}"
    if route.kind == ABSENT:
        return f"absent_{route.method.lower()}_" + "_".join(p.strip("{}") for p in route.path.split("/") if p)
    if route.kind == LIST:
        return f"list_{route.path.strip('/').replace('/', '_')}"
    return route.kind


for _spec in REGISTRY.values():
    mount(_spec)
