"""PixVerse as useapi answers it: videos (`video_id`) with `video_status` numbers.

Routes: `POST …/{operation}/create` → the video; `GET /videos/{video_id}`; `POST /files/?email=`
→ `{result: [{path, url}]}`. (useapi's DELETE removes a video upstream: cancel is `DELETE /v1/jobs/{id}`.)
"""

from __future__ import annotations

from pydantic import BaseModel

from ...generations import ADMITTED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation
from ..rendering import MODERATED, artifacts, iso, progress, with_failure
from ..spec import CREATE, STATUS, UPLOAD, Route, Shape


def _status(gen: Generation) -> tuple[int, str]:
    if gen.state in (WAITING, ADMITTED):
        return 5, "QUEUED"
    if gen.state == SUBMITTED:
        return 5, "GENERATING"
    if gen.state == COMPLETED:
        return 1, "COMPLETED"
    if gen.state == FAILED:
        return (7, "MODERATED") if gen.error_code == MODERATED else (8, "FAILED")
    return 9, "CANCELED"


def video(gen: Generation, ident: str) -> dict:
    number, name = _status(gen)
    urls = artifacts(gen)
    return with_failure(gen, {
        "video_id": ident,
        "email": gen.account or gen.pinned,
        "video_status": number,
        "video_status_name": name,
        "video_status_final": gen.terminal,
        "progress": int(round(progress(gen) * 100)),
        "url": urls[0] if urls else None,
        "create_time": iso(gen.created),
        "error": None,
    })


class PixVerseVideo(BaseModel):
    """A PixVerse video as `GET /v2/pixverse/videos/{video_id}` answers it."""

    video_id: str
    email: str | None = None
    video_status: int  # 5 queued or generating, 1 completed, 7 moderated, 8 failed, 9 canceled
    video_status_name: str
    video_status_final: bool
    progress: int
    url: str | None = None
    create_time: str | None = None
    error: str | None = None
    code: int | None = None  # a failed video's useapi code (422 moderated, 412 out of credits, 596, 5xx)
    replyRef: str | None = None


def upload_answer(provider: str, account: str, result: dict) -> dict:
    return {"result": [{"path": result["id"], "url": result.get("url")}], "email": account}


SHAPE = Shape(
    kind="video", id_key="video_id", noun="Video", render=video, model=PixVerseVideo,
    routes=(
        Route(CREATE, "/{operation:path}/create", "Create a PixVerse generation → {video_id}", suffix="/create"),
        Route(STATUS, "/videos/{video_id}", "Status of a PixVerse generation"),
        Route(UPLOAD, "/files", "Upload a file to one PixVerse account (raw bytes)"),
    ),
    upload_answer=upload_answer,
)
