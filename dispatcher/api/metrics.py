"""`GET /metrics`: Prometheus text exposition (Bearer token required, like every route but /health)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import NotFound
from ..exposition import render

router = APIRouter()


@router.get("/metrics", tags=["Operations"], summary="Prometheus metrics (slots, lines, outcomes, latency, tokens)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request):
    d = request.app.state.dispatcher
    if not d.settings.metrics:
        raise NotFound("Metrics are disabled (DISPATCHER_METRICS=false)")
    return Response(await run_in_threadpool(render, d), media_type=CONTENT_TYPE_LATEST)
