"""useapi.net scheduler routes, per provider: `GET /scheduler` (the jobs running through the
API), `GET /scheduler/available` (those, plus each account's free capacity) and
`DELETE /scheduler/{id}` (stop tracking a job: its slot frees, the provider goes on)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..state import Reject
from .http import endpoint
from .render import scheduler_row
from .specs import SPECS, Spec
from .state import UseapiState


def _routes(ustate: UseapiState, spec: Spec) -> list[Route]:
    sb = ustate.sb

    def rows(now: float) -> list[dict]:
        running = sorted(ustate.running(spec.provider, now), key=lambda j: (j.started, j.id))
        return [scheduler_row(j, now) for j in running]

    async def executing(request: Request) -> Response:
        return JSONResponse(rows(sb.clock()))

    async def available(request: Request) -> Response:
        """Accounts that can take a job now (no pending error, a free slot), freest first."""
        now = sb.clock()
        free = []
        for account in ustate.accounts[spec.provider].values():
            busy = ustate.own(account, now) + ustate.outside(account, now)
            if not account.error and busy < account.max_jobs:
                free.append({spec.id_field: account.id, "maxJobs": account.max_jobs, "executing": busy,
                             "available": account.max_jobs - busy})
        free.sort(key=lambda row: (-row["available"], row[spec.id_field]))
        return JSONResponse({"executing": rows(now), "available": free})

    async def stop(request: Request) -> Response:
        ident = request.path_params["job_id"]
        if not ustate.untrack(spec.provider, ident):
            raise Reject(404, f"Unable to locate running {spec.job_key} {ident}")
        return Response(status_code=204)

    p = f"{spec.base}/scheduler"
    return [
        Route(p, endpoint(executing), methods=["GET"]),
        Route(f"{p}/", endpoint(executing), methods=["GET"]),
        Route(f"{p}/available", endpoint(available), methods=["GET"]),
        Route(f"{p}/{{job_id}}", endpoint(stop), methods=["DELETE"]),
    ]


def routes(ustate: UseapiState) -> list[Route]:
    return [route for spec in SPECS.values() for route in _routes(ustate, spec)]
