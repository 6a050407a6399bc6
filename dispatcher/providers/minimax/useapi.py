"""MiniMax at useapi.net (`/v1/minimax`): `POST /accounts/{account}` with the pasted token (useapi
cannot renew it: the account is flagged before it expires), creates at `/videos/create` answering
`videoId`, status at `GET /videos/{videoId}` (`status` 2 completed, `statusFinal`, `percent`,
`downloadURL`/`videoURL`), uploads at `POST /files/?account=` answering `fileID`."""

from __future__ import annotations

from ..adapter import MODERATED, Poll
from ..useapi import NONE, UseapiDialect


def read(video: dict) -> Poll:
    progress = float(video.get("percent") or 0) / 100
    if not video.get("statusFinal"):
        return Poll(state="running" if progress > 0 else "pending", progress=progress)
    url = video.get("downloadURL") or video.get("videoURL")
    if video.get("status") == 2 and url:
        return Poll(state="succeeded", progress=1.0, artifacts=(url,))
    label = str(video.get("statusLabel") or "")
    if label.lower() in ("canceled", "cancelled"):
        return Poll(state="canceled", error=video.get("error"))
    code = video.get("code") if isinstance(video.get("code"), int) else None
    if label.lower() == "moderated":
        code = MODERATED
    return Poll(state="failed", error=video.get("error") or f"finished as {label or video.get('status')}",
                error_code=None if code == 500 else code)


DIALECT = UseapiDialect(
    id_key="videoId", status_path="/videos/{id}", read=read, refresh=NONE,
    upload=("/files/", "account", lambda a: {"id": a.get("fileID"), "url": a.get("url")}),
)
