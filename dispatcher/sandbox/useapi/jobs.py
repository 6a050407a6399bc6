"""useapi.net job routes: create (pinned or balanced, admitted against `maxJobs`, forwarded
in-process to the provider's emulation) and status, per provider."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..model import User
from ..state import Reject
from . import sessions
from .http import body, endpoint, max_jobs, media, optional_str
from .render import job_view
from .specs import SPECS, Spec, job_id
from .state import ApiJob, UseapiState

# create paths per provider: (path under the provider's base, job kind in the id)
CREATES: dict[str, list[tuple[str, str | None]]] = {
    "runwayml": [("/{operation:path}/create", None)],  # gen3turbo/create, videos/create, gen4/create, …
    "pixverse": [("/videos/create", None)],
    "minimax": [("/videos/create", None), ("/images/create", "image")],
    "kling": [("/videos/text2video", None), ("/videos/image2video", None)],
    "riffusion": [("/music/create", None), ("/music/create-prompt", None), ("/music/create-compose", None)],
}
STATUS_PATHS = {"runwayml": ["/tasks/{job_id}"], "pixverse": ["/videos/{job_id}"],
                "minimax": ["/videos/{job_id}", "/images/{job_id}"], "kling": ["/tasks/{job_id}"],
                "riffusion": ["/music/{job_id}"]}


async def _faults(ustate: UseapiState, spec: Spec, user: User) -> None:
    """The provider's injected latency and faults, passed through as useapi answers."""
    slow, kind = ustate.sb.draw_faults(user)
    if slow > 0:
        await asyncio.sleep(slow)
    if kind is not None:
        exc = ustate.sb.fault_reject(user, kind)
        if exc.status == 401:  # the provider refused the session: not useapi's own 401
            raise Reject(401, f"{spec.label} answered 401 Unauthorized")
        raise exc


def _create(ustate: UseapiState, spec: Spec, kind: str | None):
    sb = ustate.sb
    control = {spec.id_field, "maxJobs", "replyUrl", "replyRef"}

    async def create(request: Request) -> Response:
        data = await body(request)
        pin = optional_str(data, spec.id_field)
        limit = max_jobs(data, spec.max_jobs, required=False)
        reply_url, reply_ref = optional_str(data, "replyUrl"), optional_str(data, "replyRef")
        payload = {k: v for k, v in data.items() if k not in control and v is not None}
        account = ustate.pick(spec, pin, limit)
        sessions.touch(sb, account)
        if account.error:
            raise Reject(596, f"Account {account.id} has pending error: {account.error}")
        user = sessions.provider_user(ustate, account)
        await _faults(ustate, spec, user)
        account = ustate.accounts[spec.provider].get(account.id)  # it may have changed meanwhile
        if account is None:
            raise Reject(404, spec.not_configured(pin))
        ustate.check_capacity(account, limit)
        job, _ = sb.create_job(user, payload)
        api_job = ustate.track(ApiJob(job_id(spec, account.id, job.id, kind), account, job, sb.clock(),
                                      kind or spec.kind, reply_url, reply_ref))
        return JSONResponse(job_view(api_job, sb.clock(), media(request)))

    return create


def _status(ustate: UseapiState, spec: Spec):
    sb = ustate.sb

    async def status(request: Request) -> Response:
        ident = request.path_params["job_id"]
        api_job = ustate.jobs.get(ident)
        if api_job is None or api_job.account.spec is not spec:
            raise Reject(404, f"{spec.job_key} {ident} not found")
        account = ustate.accounts[spec.provider].get(api_job.account.id)
        if account is None:
            raise Reject(404, spec.not_configured(api_job.account.id))
        sessions.provider_user(ustate, account)
        return JSONResponse(job_view(api_job, sb.clock(), media(request)))

    return status


def routes(ustate: UseapiState) -> list[Route]:
    out = []
    for name, spec in SPECS.items():
        for path, kind in CREATES[name]:
            out.append(Route(f"{spec.base}{path}", endpoint(_create(ustate, spec, kind)), methods=["POST"]))
        for path in STATUS_PATHS[name]:
            out.append(Route(f"{spec.base}{path}", endpoint(_status(ustate, spec)), methods=["GET"]))
    return out
