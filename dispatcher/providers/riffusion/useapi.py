"""Riffusion at useapi.net (`/v1/riffusion`): `POST /accounts` with the browser cookie, once (useapi
renews the session itself with the refresh token it took from it; posting the same cookie again
would fail, so the JWT watch re-reads the account instead and flags it when useapi did not renew
in time), creates at `/music/create…` answering `job_id`, status at `GET /music/{job_id}`."""

from __future__ import annotations

from ..adapter import Poll
from ..useapi import UPSTREAM, UseapiDialect

_STATES = {"queued": "pending", "pending": "pending", "running": "running", "completed": "succeeded",
           "succeeded": "succeeded", "failed": "failed", "canceled": "canceled", "cancelled": "canceled"}


def read(job: dict) -> Poll:
    state = _STATES.get(str(job.get("status")).lower(), "running")
    urls = tuple(u for u in job.get("audio_urls") or () if isinstance(u, str)) or \
        ((job["download_url"],) if job.get("download_url") else ())
    code = job.get("code") if isinstance(job.get("code"), int) else None
    return Poll(state=state, progress=1.0 if state == "succeeded" else 0.0,
                artifacts=urls if state == "succeeded" else (), error=job.get("error"),
                error_code=None if code == 500 else code)


DIALECT = UseapiDialect(id_key="job_id", status_path="/music/{id}", read=read, refresh=UPSTREAM,
                        account_path_id=False)
