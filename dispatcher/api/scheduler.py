"""useapi's scheduler views: running generations and free capacity per account.

`GET …/scheduler` lists the running generations in the same rows as `…/scheduler/available`'s
`executing`: the public id under the provider's id key, the account, `started` (ISO 8601, UTC)
and `elapsed` ("MM:SS"), `replyUrl` and `replyRef`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..providers import REGISTRY, ProviderSpec
from ..shapes import scheduler_row
from . import models

if TYPE_CHECKING:
    from dispatcher.client import Dispatcher

router = APIRouter()


def _executing(d: Dispatcher, spec: ProviderSpec) -> list[dict]:
    """useapi's `executing` rows: `{<id>, <account>, started (ISO), elapsed ("MM:SS"), replyUrl, replyRef}`;
    the id is the provider-shaped one for generations created through those endpoints."""
    rows = d.running(spec.name)
    gens = d.core.generations.many([row["id"] for row in rows]) if rows else []
    return [scheduler_row(spec.name, spec.id_field, row, gen) for row, gen in zip(rows, gens)]


def _routes(spec: ProviderSpec) -> None:
    async def available(request: Request):
        """useapi's shape (`executing` list, `available` = accounts with free slots, most free first),
        plus every account's load and the waiting lines."""
        d = request.app.state.dispatcher
        snap = await run_in_threadpool(d.available, spec.name)
        executing = await run_in_threadpool(_executing, d, spec)
        accounts = [
            {spec.id_field: a, "maxJobs": v["maxJobs"], "executing": v["executing"], "available": v["available"],
             "eligible": v["eligible"]}
            for a, v in sorted(snap["accounts"].items())
        ]
        free = sorted(({k: v for k, v in a.items() if k != "eligible"} for a in accounts if a["available"] > 0),
                      key=lambda a: -a["available"])
        return {"executing": executing, "available": free, "accounts": accounts,
                "waiting": snap["waiting"], "pinned": snap["pinned"]}

    async def running(request: Request):
        return await run_in_threadpool(_executing, request.app.state.dispatcher, spec)

    router.add_api_route(f"{spec.api_prefix}/scheduler/available", available, methods=["GET"], tags=[spec.title],
                         name=f"{spec.name}_scheduler_available",
                         summary="Per account maxJobs, executing and available slots, plus the waiting line",
                         responses={200: {"model": models.available(spec)}})
    router.add_api_route(f"{spec.api_prefix}/scheduler", running, methods=["GET"], tags=[spec.title],
                         name=f"{spec.name}_scheduler", summary="Running generations with account and elapsed time",
                         responses={200: {"model": list[models.running(spec)]}})


for _spec in REGISTRY.values():
    _routes(_spec)
