"""useapi's provider-shaped job endpoints: code written for useapi.net runs here by changing its base URL.

- Runway `/v1/runwayml`: `POST …/create` (videos, frames, gen3turbo, …) → `{taskId}`;
  `GET /tasks/{taskId}`, `DELETE /tasks/{taskId}` (cancel); `POST /assets/?email=&name=` → `{assetId}`.
- PixVerse `/v2/pixverse`: `POST …/create` → `{video_id}`; `GET /videos/{video_id}`;
  `POST /files/?email=` → `{result: [{path}]}`.
- MiniMax `/v1/minimax`: `POST …/create` → `{videoId}`; `GET /videos/{videoId}`;
  `POST /files/?account=` → `{fileID}`.
- Riffusion `/v1/riffusion`: `POST /music/create-prompt`, `/music/create-compose` → `{job_id, user_id}`;
  `GET /music/?id=<job_id>` (a list, as useapi's `GET music`) and `GET /music/{job_id}`.

A create answers 200 at once with the provider-shaped status object (its id
included), backed by a generation like every other. Admission is asynchronous:
with every slot busy the generation waits and reads THROTTLED (Runway; QUEUED,
Queued, queued elsewhere), and an upstream refusal met later (422 moderated, 412
out of credits, 596 on hold) shows in the status object as FAILED with `error`
and `code`. A create answers useapi's codes itself only when it can know at
once: 429 when the caller sent `"wait": false` and nothing is free, 412/596
when the pinned account (or every account) is out of rotation with that error,
404 for an unknown account. These generations are `fail_fast`: one pinned to an
account that leaves rotation fails with that account's code instead of waiting
for a re-POST, as useapi answers.

The account pin is useapi's (`email`, `account`, `user_id`); a Runway create
naming an asset (`imageAssetId1`, `image_assetId`, …) runs on the asset's account,
whose id the asset id embeds. `maxJobs` on a create is validated and not applied:
the account's stored `maxJobs` governs admission.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from .. import keys, shapes
from ..accounts import not_found_message
from ..errors import DispatcherError, NotFound, ValidationError
from ..generations import decode_account, encode_account, internal_id
from ..providers import REGISTRY, ProviderSpec
from .body import raw_body, read_object
from .jobs import parse_wait

router = APIRouter()
UPLOAD_LIMIT = 20 << 20  # bytes of one uploaded file
RESERVED = ("accounts", "scheduler")
_ASSET = re.compile(r"user:dispatcher-(?P<provider>[a-z0-9]+):(?P<account>[A-Za-z0-9_.@+~-]+?)"
                    r"-asset:(?P<upstream>[A-Za-z0-9_.@+~-]+)")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
NOUN = {"runwayml": "Task", "pixverse": "Video", "minimax": "Video", "riffusion": "Job"}


# -- asset ids (Runway): they embed the account that owns the upload ---------------------


def asset_id(provider: str, account: str, upstream: str) -> str:
    return f"user:dispatcher-{provider}:{encode_account(account)}-asset:{encode_account(upstream)}"


def parse_asset_id(provider: str, value) -> tuple[str, str] | None:
    """(account, upstream asset id) of one of our asset ids, else None."""
    found = _ASSET.fullmatch(value) if isinstance(value, str) else None
    if found is None or found["provider"] != provider:
        return None
    try:
        return decode_account(found["account"]), decode_account(found["upstream"])
    except ValueError:
        return None


def resolve_assets(provider: str, payload: dict) -> tuple[dict, str | None]:
    """Replace our asset ids by the upstream's; return the payload and the account owning them."""
    owners, out = set(), {}
    for key, value in payload.items():
        found = parse_asset_id(provider, value)
        if found:
            owners.add(found[0])
            value = found[1]
        out[key] = value
    if len(owners) > 1:
        raise ValidationError(f"The assets belong to different accounts: {', '.join(sorted(owners))}")
    return out, owners.pop() if owners else None


# -- the work, run in a thread (the core is synchronous) -------------------------------


def _optional_str(body: dict, name: str) -> str | None:
    value = body.pop(name, None)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"Parameter {name} must be a string")
    return value


def _check_max_jobs(spec: ProviderSpec, value) -> None:
    if value is None or value == "":
        return
    low, high = spec.max_jobs
    try:
        ok = not isinstance(value, bool) and float(value) == int(float(value)) and low <= int(float(value)) <= high
    except (TypeError, ValueError, OverflowError):  # "1e309" is inf: int() overflows
        ok = False
    if not ok:
        raise ValidationError(f"Parameter maxJobs must be an integer between {low} and {high}, got {value!r}")


def refuse_out_of_rotation(d, spec: ProviderSpec, pin: str | None) -> None:
    """useapi answers a create for an account that left rotation with its code (412 / 596).

    Reads plain fields only (nothing is decrypted), and in the usual case, some account in
    rotation, a constant number of them however many accounts there are."""
    if pin is not None:
        account = d.accounts.summary(spec.name, pin)
        if account is not None and account.error:  # unknown: submit answers 404
            raise DispatcherError(f"Account {pin}: {account.error}", status=shapes.account_error_code(account.error))
        return
    if _one_in_rotation(d, spec):
        return
    accounts = d.accounts.summaries(spec.name)
    if accounts and all(a.error for a in accounts):
        codes = {shapes.account_error_code(a.error) for a in accounts}
        reasons = "; ".join(f"{a.id}: {a.error}" for a in accounts)
        raise DispatcherError(f"No account is in rotation ({reasons})", status=412 if codes == {412} else 596)


def _one_in_rotation(d, spec: ProviderSpec) -> bool:
    """True when a random account of the capacity table (the accounts without a flag) shows no
    error on its record either: then not every account is out of rotation. False says nothing
    (no account, or one caught between its flag and leaving the table): read them all."""
    account = d.r.hrandfield(keys.cap(spec.name))
    found = d.accounts.summary(spec.name, account) if account is not None else None
    return found is not None and not found.error


def create(d, spec: ProviderSpec, operation: str, body: dict, query_wait) -> dict:
    payload = dict(body)
    pin = _optional_str(payload, spec.id_field)
    reply_url = _optional_str(payload, "replyUrl")
    reply_ref = _optional_str(payload, "replyRef")
    wait = parse_wait(payload.pop("wait", query_wait))
    _check_max_jobs(spec, payload.pop("maxJobs", None))
    if spec.name == "runwayml":
        payload, owner = resolve_assets(spec.name, payload)
        if owner is not None:
            if pin is not None and pin != owner:
                raise ValidationError(f"The asset belongs to account {owner}, not to {pin}")
            pin = owner
    refuse_out_of_rotation(d, spec, pin)
    handle = d.submit(spec.name, operation, payload, account=pin, reply_url=reply_url, reply_ref=reply_ref,
                      wait=wait, extra={"shape": spec.name, "fail_fast": True})
    return shapes.render(handle.refresh())


def find(d, spec: ProviderSpec, job_id: str):
    """The generation behind a provider-shaped id (or an internal id of that provider), else 404."""
    gen = d.generations.find(job_id)
    if (gen is None or gen.provider != spec.name
            or (internal_id(job_id) != job_id and shapes.job_id(gen, spec.name) != job_id)):
        raise NotFound(f"{NOUN[spec.name]} {job_id} not found")
    return gen


def status(d, spec: ProviderSpec, job_id: str) -> dict:
    return shapes.render(find(d, spec, job_id), spec.name)


def cancel(d, spec: ProviderSpec, job_id: str) -> dict:
    gen = find(d, spec, job_id)
    return shapes.render(d.cancel(gen.id), spec.name)


def upload(d, spec: ProviderSpec, account: str | None, data: bytes, name: str) -> tuple[str, dict]:
    if not data:
        raise ValidationError("Request body is empty: send the file's bytes")
    if not account:
        ids = d.accounts.ids(spec.name)
        if not ids:
            raise NotFound(not_found_message(spec))
        if len(ids) > 1:
            raise ValidationError(f"Parameter {spec.id_field} is required when more than one account is configured")
        account = ids[0]
    found = d.accounts.get(spec, account)  # 404 when unknown
    if found.error:
        raise DispatcherError(f"Account {account}: {found.error}", status=shapes.account_error_code(found.error))
    return account, d.upload(spec.name, account, data, name)


def _file_name(request: Request) -> str:
    name = _NAME.sub("_", (request.query_params.get("name") or "").rsplit("/", 1)[-1])[:200].strip("._")
    if name:
        return name
    subtype = request.headers.get("content-type", "").split(";")[0].partition("/")[2]
    ext = subtype if subtype.isalnum() and len(subtype) <= 8 else "bin"
    return f"upload.{ext}"


# -- routes ---------------------------------------------------------------------------


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
    if spec.name == "runwayml":
        params.append({"name": "name", "in": "query", "required": False, "schema": {"type": "string"}})
    content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {"parameters": params, "requestBody": {"required": True, "content": content}}


def _routes(spec: ProviderSpec) -> None:
    prefix, tags, name = spec.api_prefix, [spec.title], spec.name
    id_key = shapes.KINDS[name][1]

    async def create_route(request: Request):
        operation = request.path_params["operation"].strip("/")
        if operation.split("/")[0] in RESERVED:
            raise NotFound("Not found")
        body = await read_object(request)
        return await run_in_threadpool(create, request.app.state.dispatcher, spec, f"{operation}/create", body,
                                       request.query_params.get("wait"))

    async def create_fixed(request: Request):
        body = await read_object(request)
        operation = request.url.path[len(prefix) + 1:].strip("/")
        return await run_in_threadpool(create, request.app.state.dispatcher, spec, operation, body,
                                       request.query_params.get("wait"))

    async def status_route(request: Request):
        return await run_in_threadpool(status, request.app.state.dispatcher, spec, request.path_params[id_key])

    async def cancel_route(request: Request):
        return await run_in_threadpool(cancel, request.app.state.dispatcher, spec, request.path_params[id_key])

    async def upload_route(request: Request):
        data = await raw_body(request, UPLOAD_LIMIT)
        account, result = await run_in_threadpool(
            upload, request.app.state.dispatcher, spec, request.query_params.get(spec.id_field), data,
            _file_name(request))
        if name == "runwayml":
            return {"assetId": asset_id(name, account, str(result["id"])), "email": account}
        if name == "pixverse":
            return {"result": [{"path": result["id"], "url": result.get("url")}], "email": account}
        return {"fileID": result["id"], "account": account}

    async def music_list(request: Request):
        job_id = request.query_params.get("id")
        if not job_id:
            raise ValidationError("Parameter id is required: the job_id returned by POST music/create-prompt")
        return [await run_in_threadpool(status, request.app.state.dispatcher, spec, job_id)]

    def add(path, endpoint, method, summary, suffix, extra=None):
        router.add_api_route(prefix + path, endpoint, methods=[method], tags=tags, summary=summary,
                             name=f"{name}_compat_{suffix}", openapi_extra=extra)

    id_param = {"parameters": [{"name": id_key, "in": "path", "required": True, "schema": {"type": "string"}}]}
    if name == "riffusion":
        for op in ("create-prompt", "create-compose"):
            add(f"/music/{op}", create_fixed, "POST", f"Create music ({op}) → {{{id_key}, user_id}}",
                op.replace("-", "_"), _create_schema(spec))
        query = {"parameters": [{"name": "id", "in": "query", "required": True, "schema": {"type": "string"}}]}
        for path in ("/music", "/music/"):
            add(path, music_list, "GET", "Status and results of a music job (?id=job_id)", f"music{len(path)}",
                query)
        add(f"/music/{{{id_key}}}", status_route, "GET", "Status and results of a music job", "status", id_param)
        return
    add("/{operation:path}/create", create_route, "POST", f"Create a {spec.title} generation → {{{id_key}}}",
        "create", {**_create_schema(spec), "parameters": [
            {"name": "operation", "in": "path", "required": True, "schema": {"type": "string"}}]})
    status_path = f"/tasks/{{{id_key}}}" if name == "runwayml" else f"/videos/{{{id_key}}}"
    add(status_path, status_route, "GET", f"Status of a {spec.title} generation", "status", id_param)
    if name == "runwayml":  # elsewhere useapi's DELETE removes the video upstream: cancel is /v1/jobs/{id}
        add(status_path, cancel_route, "DELETE", f"Cancel a {spec.title} generation", "cancel", id_param)
    upload_path = "/assets" if name == "runwayml" else "/files"
    for path in (upload_path, upload_path + "/"):
        add(path, upload_route, "POST", f"Upload a file to one {spec.title} account (raw bytes)",
            f"upload{len(path)}", _upload_schema(spec))


for _spec in REGISTRY.values():
    _routes(_spec)
