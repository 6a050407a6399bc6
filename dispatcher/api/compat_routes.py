"""Mounts every provider's useapi-shaped job routes, as its folder declares them (`Shape.routes`).

The work behind each kind of route is the same for every provider (`compat.py`); only the
paths, the id's name and the answers differ, and those come from the provider's folder.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..errors import NotFound, ValidationError
from ..providers import CANCEL, CREATE, LIST, REGISTRY, STATUS, UPLOAD, ProviderSpec, Route
from . import compat
from .body import raw_body, read_object

router = APIRouter()
RESERVED = ("accounts", "scheduler")  # not operations: the account and scheduler routes own them


def _create_schema(spec: ProviderSpec) -> dict:
    low, high = spec.max_jobs
    props = {
        spec.id_field: {"type": "string", "description": "pin the generation to this account"},
        "replyUrl": {"type": "string", "maxLength": 1024}, "replyRef": {"type": "string", "maxLength": 1024},
        "wait": {"type": "boolean", "description": "false: answer 429 instead of waiting for a free slot"},
        "maxJobs": {"type": "integer", "minimum": low, "maximum": high, "description": "validated, not applied"},
    }
    schema = {"type": "object", "additionalProperties": True, "properties": props}
    content = {"application/json": {"schema": schema}, "multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def _upload_schema(spec: ProviderSpec) -> dict:
    params = [{"name": spec.id_field, "in": "query", "required": False, "schema": {"type": "string"}}]
    if spec.shape.upload_name:
        params.append({"name": "name", "in": "query", "required": False, "schema": {"type": "string"}})
    content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {"parameters": params, "requestBody": {"required": True, "content": content}}


def _path_param(name: str, where: str = "path") -> dict:
    return {"parameters": [{"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}]}


def _create(spec: ProviderSpec, route: Route):
    async def create(request: Request):
        if route.operation is not None:
            operation = route.operation
        else:
            operation = request.path_params["operation"].strip("/")
            if operation.split("/")[0] in RESERVED:
                raise NotFound("Not found")
            operation += route.suffix
        body = await read_object(request)
        return await run_in_threadpool(compat.create, request.app.state.dispatcher, spec, operation, body,
                                       request.query_params.get("wait"))

    extra = _create_schema(spec)
    if route.operation is None:
        extra = {**extra, **_path_param("operation")}
    return create, "POST", extra


def _by_id(spec: ProviderSpec, route: Route):
    work = compat.status if route.kind == STATUS else compat.cancel

    async def endpoint(request: Request):
        return await run_in_threadpool(work, request.app.state.dispatcher, spec,
                                       request.path_params[spec.shape.id_key])

    return endpoint, ("GET" if route.kind == STATUS else "DELETE"), _path_param(spec.shape.id_key)


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
        account, result = await run_in_threadpool(
            compat.upload, request.app.state.dispatcher, spec, request.query_params.get(spec.id_field), data,
            compat.file_name(request))
        return spec.shape.upload_answer(spec.name, account, result)

    return upload, "POST", _upload_schema(spec)


_KINDS = {CREATE: _create, STATUS: _by_id, CANCEL: _by_id, LIST: _list, UPLOAD: _upload}


def mount(spec: ProviderSpec) -> None:
    """Add one provider's routes; LIST and UPLOAD paths answer with and without a trailing slash."""
    for route in spec.shape.routes:
        endpoint, method, extra = _KINDS[route.kind](spec, route)
        paths = (route.path, route.path + "/") if route.kind in (LIST, UPLOAD) else (route.path,)
        for path in paths:
            router.add_api_route(spec.api_prefix + path, endpoint, methods=[method], tags=[spec.title],
                                 summary=route.summary, name=f"{spec.name}_compat_{_suffix(route, path)}",
                                 openapi_extra=extra)


def _suffix(route: Route, path: str) -> str:
    """The route's name after `<provider>_compat_` (its OpenAPI operationId derives from it)."""
    if route.kind == CREATE and route.operation is not None:
        return route.operation.rsplit("/", 1)[-1].replace("-", "_")
    if route.kind == LIST:
        return f"{route.path.strip('/').rsplit('/', 1)[-1]}{len(path)}"
    if route.kind == UPLOAD:
        return f"upload{len(path)}"
    return route.kind


for _spec in REGISTRY.values():
    mount(_spec)
