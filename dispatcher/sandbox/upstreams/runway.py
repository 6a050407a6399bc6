"""Runway emulation: `/runwayml/v1/...`, Bearer JWT, `Idempotency-Key`, errors `{"error": msg}`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..common import Dialect, apply_faults, authenticate, endpoint, iso, json_body, media_url
from ..media import keep_upload
from ..model import BadRequest, Emulation, Job, register
from ..state import Sandbox

STATUS = {"pending": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED",
          "failed": "FAILED", "canceled": "CANCELLED"}


EMULATION = register(Emulation("runwayml", "email", "password", aliases=("runway",)))


class Runway(Dialect):
    provider = "runwayml"


def routes(sb: Sandbox) -> list[Route]:
    d = Runway()

    def task(request: Request, job: Job) -> dict:
        now = sb.clock()
        phase = job.phase(now)
        return {"task": {
            "id": job.id,
            "status": STATUS[phase],
            "createdAt": iso(job.created),
            "progressRatio": round(job.progress(now), 4),
            "artifacts": [{"url": media_url(request, f"{job.id}.gif")}] if phase == "succeeded" else [],
            "error": "upstream generation failed" if phase == "failed" else None,
        }}

    async def login(request: Request) -> Response:
        body = await json_body(request)
        user = sb.login_password(d.provider, body.get("email"), body.get("password"))
        token, _ = sb.mint(user, id=user.number)
        return d.ok({"token": token})

    async def create(request: Request) -> Response:
        user = authenticate(sb, d, request)
        body = await json_body(request)
        options = body.get("options")
        if not isinstance(body.get("taskType"), str) or not isinstance(options, dict):
            raise BadRequest("taskType (string) and options (object) are required")
        await apply_faults(sb, user)
        job, _ = sb.create_job(user, options, d.idem_key(request))
        return d.ok(task(request, job))

    async def poll(request: Request) -> Response:
        user = authenticate(sb, d, request)
        await apply_faults(sb, user)
        return d.ok(task(request, sb.find_job(user, request.path_params["id"])))

    async def cancel(request: Request) -> Response:
        user = authenticate(sb, d, request)
        job = sb.cancel_job(sb.find_job(user, request.path_params["id"]))
        return d.ok(task(request, job))

    async def upload(request: Request) -> Response:
        authenticate(sb, d, request)
        name = await keep_upload(sb, request, "bin")
        return d.ok({"id": name.rsplit(".", 1)[0], "url": media_url(request, name)})

    p = "/runwayml/v1"
    return [
        Route(f"{p}/login", endpoint(d, login), methods=["POST"]),
        Route(f"{p}/tasks", endpoint(d, create), methods=["POST"]),
        Route(f"{p}/tasks/{{id}}", endpoint(d, poll), methods=["GET"]),
        Route(f"{p}/tasks/{{id}}", endpoint(d, cancel), methods=["DELETE"]),
        Route(f"{p}/assets", endpoint(d, upload), methods=["POST"]),
    ]
