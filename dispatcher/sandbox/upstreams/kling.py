"""Kling emulation: `/kling/api/...`, Bearer JWT, `Idempotency-Key`, `{"result": 1, "data": …}`,
errors `{"result": 0, "message": msg}`; numeric task ids; status 5 submitted, 10 processing,
99 succeed, 50 failed, 58 canceled."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..common import Dialect, apply_faults, authenticate, endpoint, json_body, media_url
from ..model import BadRequest, Emulation, Job, register
from ..state import Reject, Sandbox

STATUS = {"pending": 5, "running": 10, "succeeded": 99, "failed": 50, "canceled": 58}

EMULATION = register(Emulation("kling", "email", "password", job_id_base=700_000_000))


class Kling(Dialect):
    provider = "kling"

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"result": 0, "message": message}

    def ok_body(self, data: Any) -> Any:
        return {"result": 1, "data": data}


def routes(sb: Sandbox) -> list[Route]:
    d = Kling()

    def task(request: Request, job: Job) -> dict:
        now = sb.clock()
        phase = job.phase(now)
        works = [{"resource": {"resource": media_url(request, f"{job.id}.gif")}}] if phase == "succeeded" else []
        return {"status": STATUS[phase], "progress": int(job.progress(now) * 100), "works": works,
                "message": "upstream generation failed" if phase == "failed" else None}

    def find(request: Request, user) -> Job:
        raw = request.query_params.get("taskId") or ""
        if not raw.isdigit():
            raise Reject(404, "task not found")
        return sb.find_job(user, raw)

    async def login(request: Request) -> Response:
        body = await json_body(request)
        try:
            user = sb.login_password(d.provider, body.get("email"), body.get("password"))
        except Reject as exc:
            raise Reject(400, exc.message) from None  # Kling refuses a login with a 400
        token, claims = sb.mint(user, userId=user.number)
        return d.ok({"userId": user.number, "token": token, "ExpireTime": int(claims["exp"]),
                     "IssueTime": int(claims["iat"])})

    async def submit(request: Request) -> Response:
        user = authenticate(sb, d, request)
        body = await json_body(request)
        if not isinstance(body.get("type"), str) or not isinstance(body.get("arguments"), dict):
            raise BadRequest("type (string) and arguments (object) are required")
        await apply_faults(sb, user)
        job, _ = sb.create_job(user, body["arguments"], d.idem_key(request))
        return d.ok({"task": {"id": int(job.id)}})

    async def status(request: Request) -> Response:
        user = authenticate(sb, d, request)
        await apply_faults(sb, user)
        return d.ok(task(request, find(request, user)))

    async def cancel(request: Request) -> Response:
        user = authenticate(sb, d, request)
        return d.ok(task(request, sb.cancel_job(find(request, user))))

    p = "/kling/api"
    return [
        Route(f"{p}/account/login", endpoint(d, login), methods=["POST"]),
        Route(f"{p}/task/submit", endpoint(d, submit), methods=["POST"]),
        Route(f"{p}/task/status", endpoint(d, status), methods=["GET"]),
        Route(f"{p}/task/cancel", endpoint(d, cancel), methods=["POST"]),
    ]
