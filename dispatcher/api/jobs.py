"""Generic job endpoints: create under any provider operation, read and cancel by id."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..capacity import DEFAULT_PRIORITY, check_priority
from ..errors import NotFound, ValidationError
from ..providers import REGISTRY, ProviderSpec
from .body import read_object
from .models import Job

router = APIRouter()
RESERVED = ("accounts", "scheduler")
CONTROL_FIELDS = ("replyUrl", "replyRef", "replyQueue", "wait", "priority")


def parse_wait(value) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValidationError("wait must be a boolean")


PRIORITY_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 9, "default": 5,
                   "description": "0 (lowest) to 9 (highest): higher is admitted first; waiting raises it over time"}


REPLY_QUEUE_SCHEMA = {
    "type": "object", "required": ["queue", "function"], "additionalProperties": False,
    "description": "when the job ends, enqueue `function(event)` on this RQ queue (the replyUrl body as "
                   "`event`); the pair must be allowed by DISPATCHER_REPLY_QUEUES",
    "properties": {"queue": {"type": "string", "maxLength": 128}, "function": {"type": "string", "maxLength": 200},
                   "serializer": {"type": "string", "enum": ["pickle", "json"], "default": "pickle"}}}


def parse_priority(value) -> int:
    """The `priority` field of a create: absent means 5; anything but a whole number 0..9 is a 400."""
    if value is None:
        return DEFAULT_PRIORITY
    return check_priority(value)


def split_body(spec: ProviderSpec, body: dict) -> tuple[dict, dict]:
    """Separate the dispatcher's own fields (pin, replyUrl, replyRef, replyQueue, wait, priority) from the
    upstream payload."""
    control = {k: body[k] for k in CONTROL_FIELDS if k in body}
    pin = body.get(spec.id_field)
    if pin is not None and not isinstance(pin, str):
        raise ValidationError(f"{spec.id_field} must be a string")
    payload = {k: v for k, v in body.items() if k not in CONTROL_FIELDS and k != spec.id_field}
    control["account"] = pin or None
    return control, payload


def _create_route(spec: ProviderSpec) -> None:
    async def create(request: Request):
        operation = request.path_params["operation"].strip("/")
        if not operation or operation.split("/")[0] in RESERVED:
            raise NotFound("Not found")
        if len(operation) <= 200:  # longer: submit answers 400
            spec.check_operation(operation)  # 404 naming the operations, before the body is read
        body = await read_object(request)
        control, payload = split_body(spec, body)
        d = request.app.state.dispatcher
        handle = await run_in_threadpool(
            lambda: d.submit(spec.name, operation, payload, account=control["account"],
                             reply_url=control.get("replyUrl"), reply_ref=control.get("replyRef"),
                             reply_queue=control.get("replyQueue"),
                             wait=parse_wait(control.get("wait")), priority=parse_priority(control.get("priority")),
                             tenant=getattr(request.state, "tenant", None)))
        gen = await run_in_threadpool(handle.refresh)
        return gen.to_dict()

    schema = {"type": "object", "additionalProperties": True, "properties": {
        spec.id_field: {"type": "string", "description": "pin the job to this account"},
        "replyUrl": {"type": "string", "maxLength": 1024}, "replyRef": {"type": "string", "maxLength": 1024},
        "replyQueue": REPLY_QUEUE_SCHEMA,
        "wait": {"type": "boolean", "description": "false: answer 429 instead of waiting for capacity"},
        "priority": PRIORITY_SCHEMA}}
    router.add_api_route(
        f"{spec.api_prefix}/{{operation:path}}", create, methods=["POST"], tags=[spec.title],
        name=f"{spec.name}_create_job", summary=f"Create a {spec.title} generation (one of its operations)",
        description=f"Operations: {', '.join(spec.operations) or 'any'}. Another answers 404 and stores nothing.",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": schema}}}},
        responses={200: {"model": Job}},
    )


@router.get("/v1/jobs/{job_id}", tags=["Jobs"], summary="Read a generation", responses={200: {"model": Job}})
async def get_job(job_id: str, request: Request):
    gen = await run_in_threadpool(request.app.state.dispatcher.get, job_id)
    return gen.to_dict()


@router.delete("/v1/jobs/{job_id}", tags=["Jobs"], summary="Cancel a generation", responses={200: {"model": Job}})
async def cancel_job(job_id: str, request: Request):
    gen = await run_in_threadpool(request.app.state.dispatcher.cancel, job_id)
    return gen.to_dict()


for _spec in REGISTRY.values():
    _create_route(_spec)
