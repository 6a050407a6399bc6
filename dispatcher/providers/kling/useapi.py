"""Kling at useapi.net (`/v1/kling`): `POST /accounts` (the email in the body; the session under
`session.ExpireTime`), creates at `/videos/text2video` and `/videos/image2video` answering `task_id`,
status at `GET /tasks/{task_id}` (Kling's numbers: 99 succeed, 50 failed; `status_final`,
`works[].resource.resource`)."""

from __future__ import annotations

from ..adapter import Poll
from ..useapi import RELOGIN, UseapiDialect


def read(task: dict) -> Poll:
    progress = float(task.get("progress") or 0) / 100
    if not task.get("status_final"):
        return Poll(state="running" if progress > 0 or task.get("status") == 10 else "pending", progress=progress)
    urls = tuple(w["resource"]["resource"] for w in task.get("works") or ()
                 if isinstance(w, dict) and isinstance(w.get("resource"), dict) and w["resource"].get("resource"))
    if task.get("status") == 99:
        return Poll(state="succeeded", progress=1.0, artifacts=urls)
    if str(task.get("status_name")) in ("canceled", "cancelled"):
        return Poll(state="canceled", error=task.get("error"))
    code = task.get("code") if isinstance(task.get("code"), int) else None
    return Poll(state="failed", error=task.get("error") or f"finished as {task.get('status_name')}",
                error_code=None if code == 500 else code)


DIALECT = UseapiDialect(id_key="task_id", status_path="/tasks/{id}", read=read, refresh=RELOGIN,
                        account_path_id=False, session_key="session")
