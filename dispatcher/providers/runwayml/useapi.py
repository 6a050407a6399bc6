"""Runway at useapi.net (`/v1/runwayml`): `POST /accounts/{email}`, creates at `/<operation>`
(`gen3turbo/create`, `videos/create`, …) answering `taskId`, status at `GET /tasks/{taskId}`
(PENDING, RUNNING, THROTTLED, SUCCEEDED, FAILED), uploads at `POST /assets/?email=&name=`."""

from __future__ import annotations

from ..adapter import Poll
from ..useapi import RELOGIN, UseapiDialect

_STATES = {"PENDING": "pending", "THROTTLED": "pending", "RUNNING": "running",
           "SUCCEEDED": "succeeded", "FAILED": "failed", "CANCELLED": "canceled", "CANCELED": "canceled"}


def read(task: dict) -> Poll:
    return Poll(state=_STATES.get(str(task.get("status")), "running"),
                progress=float(task.get("progressRatio") or 0),
                artifacts=tuple(a["url"] for a in task.get("artifacts") or () if isinstance(a, dict) and a.get("url")),
                error=task.get("error"), error_code=_code(task))


def _code(body: dict) -> int | None:
    code = body.get("code")
    return code if isinstance(code, int) and code != 500 else None


DIALECT = UseapiDialect(
    id_key="taskId", status_path="/tasks/{id}", read=read, refresh=RELOGIN,
    upload=("/assets/", "email", lambda a: {"id": a.get("assetId"), "url": a.get("url")}),
)
