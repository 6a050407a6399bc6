"""PixVerse emulation: `/pixverse/creative_platform/...`, `Token` header, `Ai-Trace-Id`,
envelope `{"ErrCode": 0, "ErrMsg": "success", "Resp": {...}}`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..common import Dialect, apply_faults, authenticate, endpoint, json_body, media_url
from ..media import keep_upload
from ..model import Emulation, Job, register
from ..state import Reject, Sandbox

STATUS = {"pending": 5, "running": 5, "succeeded": 1, "failed": 8, "canceled": 9}
ERR_CODES = {400: 400017, 401: 10005, 404: 400018, 412: 500043, 422: 500054, 429: 500044, 596: 500069}


EMULATION = register(Emulation("pixverse", "email", "password", job_id_base=300_000_000))


class PixVerse(Dialect):
    provider = "pixverse"
    token_header = "token"
    bearer = False
    idem_header = "ai-trace-id"

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"ErrCode": ERR_CODES.get(status, 500000 + status), "ErrMsg": message}

    def ok_body(self, data: Any) -> Any:
        return {"ErrCode": 0, "ErrMsg": "success", "Resp": data}


def routes(sb: Sandbox) -> list[Route]:
    d = PixVerse()

    def video(request: Request, job: Job) -> dict:
        now = sb.clock()
        phase = job.phase(now)
        return {
            "video_id": int(job.id),
            "video_status": STATUS[phase],
            "progress": int(job.progress(now) * 100),
            "url": media_url(request, f"{job.id}.gif") if phase == "succeeded" else None,
            "err_msg": "upstream generation failed" if phase == "failed" else None,
        }

    def find(request: Request, user) -> Job:
        raw = request.path_params["video_id"]
        if not raw.isdigit():
            raise Reject(404, "Not found")
        return sb.find_job(user, str(int(raw)))

    async def login(request: Request) -> Response:
        body = await json_body(request)
        user = sb.login_password(d.provider, body.get("Username"), body.get("Password"))
        token, claims = sb.mint(user, AccountId=user.number)
        return d.ok({"Result": {"Token": token, "AccountId": user.number,
                                "ExpireTime": int(claims["exp"]), "Username": user.id}})

    async def create(request: Request) -> Response:
        user = authenticate(sb, d, request)
        body = await json_body(request)
        await apply_faults(sb, user)
        job, _ = sb.create_job(user, body, d.idem_key(request))
        return d.ok({"video_id": int(job.id)})

    async def poll(request: Request) -> Response:
        user = authenticate(sb, d, request)
        await apply_faults(sb, user)
        return d.ok(video(request, find(request, user)))

    async def cancel(request: Request) -> Response:
        user = authenticate(sb, d, request)
        return d.ok(video(request, sb.cancel_job(find(request, user))))

    async def upload(request: Request) -> Response:
        authenticate(sb, d, request)
        name = await keep_upload(sb, request, "png")
        return d.ok({"path": f"upload/{name}", "url": media_url(request, name)})

    p = "/pixverse/creative_platform"
    return [
        Route(f"{p}/login", endpoint(d, login), methods=["POST"]),
        Route(f"{p}/video/create", endpoint(d, create), methods=["POST"]),
        Route(f"{p}/video/{{video_id}}", endpoint(d, poll), methods=["GET"]),
        Route(f"{p}/video/{{video_id}}/cancel", endpoint(d, cancel), methods=["POST"]),
        Route(f"{p}/media/upload", endpoint(d, upload), methods=["POST"]),
    ]
