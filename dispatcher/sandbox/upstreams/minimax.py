"""MiniMax (Hailuo) emulation: `/minimax/v1/api/...`, `token` header (the pasted token),
`X-Request-Id`, envelope `{"statusInfo": {"code": 0, "message": "Success"}, "data": {...}}`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..common import Dialect, apply_faults, authenticate, endpoint, json_body, media_url
from ..media import keep_upload
from ..model import Emulation, Job, register
from ..state import Sandbox

STATUS = {"pending": 1, "running": 1, "succeeded": 2, "failed": 5, "canceled": 7}


EMULATION = register(Emulation("minimax", "account", "token", aliases=("hailuo",), job_id_base=400_000_000_000))


class MiniMax(Dialect):
    provider = "minimax"
    token_header = "token"
    bearer = False
    idem_header = "x-request-id"

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"statusInfo": {"code": status, "message": message}}

    def ok_body(self, data: Any) -> Any:
        return {"statusInfo": {"code": 0, "message": "Success"}, "data": data}


def routes(sb: Sandbox) -> list[Route]:
    d = MiniMax()

    def video(request: Request, job: Job) -> dict:
        now = sb.clock()
        phase = job.phase(now)
        url = media_url(request, f"{job.id}.gif") if phase == "succeeded" else None
        return {
            "id": job.id,
            "status": STATUS[phase],
            "percent": int(job.progress(now) * 100),
            "videoURL": url,
            "downloadURL": url,
            "message": "upstream generation failed" if phase == "failed" else None,
        }

    async def user_info(request: Request) -> Response:
        user = authenticate(sb, d, request)
        return d.ok({
            "userInfo": {"id": user.id, "name": f"sandbox-{user.id}", "deviceID": str(user.number),
                         "isAnonymous": False, "avatar": media_url(request, "avatar.gif")},
            "exp": user.token_exp,
            "iat": user.registered_at,
            "supportVideo": user.support_video,
            "supportMusic": user.support_music,
        })

    async def create(request: Request) -> Response:
        user = authenticate(sb, d, request)
        body = await json_body(request)
        await apply_faults(sb, user)
        job, _ = sb.create_job(user, body, d.idem_key(request))
        return d.ok({"id": job.id})

    async def poll(request: Request) -> Response:
        user = authenticate(sb, d, request)
        await apply_faults(sb, user)
        return d.ok(video(request, sb.find_job(user, request.path_params["id"])))

    async def cancel(request: Request) -> Response:
        user = authenticate(sb, d, request)
        return d.ok(video(request, sb.cancel_job(sb.find_job(user, request.path_params["id"]))))

    async def upload(request: Request) -> Response:
        authenticate(sb, d, request)
        name = await keep_upload(sb, request, "png")
        return d.ok({"fileID": name.rsplit(".", 1)[0], "url": media_url(request, name)})

    p = "/minimax/v1/api"
    return [
        Route(f"{p}/user/info", endpoint(d, user_info), methods=["GET"]),
        Route(f"{p}/multimodal/generate/video", endpoint(d, create), methods=["POST"]),
        Route(f"{p}/multimodal/video/{{id}}", endpoint(d, poll), methods=["GET"]),
        Route(f"{p}/multimodal/video/{{id}}/cancel", endpoint(d, cancel), methods=["POST"]),
        Route(f"{p}/files/upload", endpoint(d, upload), methods=["POST"]),
    ]
