"""Riffusion emulation: Supabase-like auth under `/riffusion/auth/v1`, generations under
`/riffusion/api`, Bearer access JWT, rotating refresh tokens, errors `{"error": msg}`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..common import Dialect, apply_faults, authenticate, endpoint, json_body, media_url
from ..model import BadRequest, Emulation, Job, User, register
from ..state import Sandbox

STATUS = {"pending": "queued", "running": "running", "succeeded": "complete",
          "failed": "failed", "canceled": "canceled"}


EMULATION = register(Emulation("riffusion", "user_id", "cookie"))


class Riffusion(Dialect):
    provider = "riffusion"


def routes(sb: Sandbox) -> list[Route]:
    d = Riffusion()

    def session(user: User) -> dict:
        access, claims = sb.mint(user, role="authenticated", aud="authenticated")
        return {
            "access_token": access,
            "refresh_token": sb.issue_refresh(user),
            "expires_in": int(user.jwt_lifetime),
            "expires_at": int(claims["exp"]),
            "token_type": "bearer",
            "user": {"id": user.id, "aud": "authenticated", "role": "authenticated"},
        }

    def generation(request: Request, job: Job) -> dict:
        now = sb.clock()
        phase = job.phase(now)
        return {
            "id": job.id,
            "status": STATUS[phase],
            "progress": round(job.progress(now), 4),
            "audio_url": media_url(request, f"{job.id}.wav") if phase == "succeeded" else None,
            "error": "upstream generation failed" if phase == "failed" else None,
        }

    async def token(request: Request) -> Response:
        grant = request.query_params.get("grant_type")
        body = await json_body(request)
        if grant == "cookie":
            user = sb.login_cookie(body.get("cookie"))
        elif grant == "refresh_token":
            user = sb.refresh(body.get("refresh_token"))
        else:
            raise BadRequest("grant_type must be cookie or refresh_token")
        return d.ok(session(user))

    async def create(request: Request) -> Response:
        user = authenticate(sb, d, request)
        body = await json_body(request)
        await apply_faults(sb, user)
        job, _ = sb.create_job(user, body, d.idem_key(request))
        return d.ok({"id": job.id, "status": STATUS[job.phase(sb.clock())]})

    async def poll(request: Request) -> Response:
        user = authenticate(sb, d, request)
        await apply_faults(sb, user)
        return d.ok(generation(request, sb.find_job(user, request.path_params["id"])))

    async def cancel(request: Request) -> Response:
        user = authenticate(sb, d, request)
        return d.ok(generation(request, sb.cancel_job(sb.find_job(user, request.path_params["id"]))))

    return [
        Route("/riffusion/auth/v1/token", endpoint(d, token), methods=["POST"]),
        Route("/riffusion/api/generations", endpoint(d, create), methods=["POST"]),
        Route("/riffusion/api/generations/{id}", endpoint(d, poll), methods=["GET"]),
        Route("/riffusion/api/generations/{id}", endpoint(d, cancel), methods=["DELETE"]),
    ]
