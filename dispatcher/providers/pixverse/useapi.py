"""PixVerse at useapi.net (`/v2/pixverse`): `POST /accounts/{email}`, creates at `/videos/create`
answering `video_id`, status at `GET /videos/{video_id}` (`video_status_name`, `video_status_final`,
`url`), uploads at `POST /files/?email=` answering `result[0].path`."""

from __future__ import annotations

from ..adapter import MODERATED, Poll
from ..useapi import RELOGIN, UseapiDialect


def read(video: dict) -> Poll:
    name = str(video.get("video_status_name") or "").upper()
    final = bool(video.get("video_status_final"))
    progress = float(video.get("progress") or 0) / 100
    if not final:
        return Poll(state="running" if progress > 0 or name == "GENERATING" else "pending", progress=progress)
    if name == "COMPLETED" and video.get("url"):
        return Poll(state="succeeded", progress=1.0, artifacts=(video["url"],))
    if name in ("CANCELED", "CANCELLED"):
        return Poll(state="canceled", error=video.get("error"))
    code = MODERATED if name == "MODERATED" else video.get("code") if isinstance(video.get("code"), int) else None
    return Poll(state="failed", error=video.get("error") or f"finished as {name or 'unknown'}",
                error_code=None if code == 500 else code)


def _upload(answer: dict) -> dict:
    first = (answer.get("result") or [{}])[0] if isinstance(answer.get("result"), list) else {}
    return {"id": first.get("path") or answer.get("path"), "url": first.get("url")}


DIALECT = UseapiDialect(
    id_key="video_id", status_path="/videos/{id}", read=read, refresh=RELOGIN,
    upload=("/files/", "email", _upload),
)
