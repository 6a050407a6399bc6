"""The service's own endpoints: `GET /health`, and useapi's `GET /v2/account`.

useapi's clients call `GET /v2/account` to check their API token (the n8n node's credential
test does). The dispatcher answers it in useapi's shape with what it knows: no user, e-mail or
subscription of useapi's (null), no global `replyUrl` (the dispatcher has none: webhooks are per
create), and under `apis` each provider it serves with its path, its operations and how many
accounts it has and has in rotation. It never shows a secret, and reads no credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..providers import REGISTRY
from .models import Health, UseapiAccount

if TYPE_CHECKING:
    from dispatcher.client import Dispatcher

router = APIRouter()
NAME = "dispatcher"


def account_summary(d: Dispatcher) -> dict:
    apis = {}
    for spec in REGISTRY.values():
        found = d.core.accounts.summaries(spec.name)  # plain fields: nothing decrypted
        usable = [a for a in found if not a.error]
        apis[spec.name] = {"path": spec.api_prefix, "accounts": len(found), "inRotation": len(usable),
                           "maxJobs": sum(a.max_jobs for a in usable), "operations": list(spec.operations)}
    return {"name": NAME, "email": None, "sub": None, "created": None, "verified": None, "replyUrl": None,
            "apis": apis}


@router.get("/v2/account", tags=["Account"], summary="Retrieve account information (useapi's shape)",
            responses={200: {"model": UseapiAccount}})
async def account(request: Request):
    return await run_in_threadpool(account_summary, request.app.state.dispatcher)


@router.get("/health", tags=["Operations"], summary="Liveness: the API process answers (no token needed)",
            responses={200: {"model": Health}}, openapi_extra={"security": []})
def health():
    return {"ok": True}
