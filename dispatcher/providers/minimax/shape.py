"""MiniMax as useapi answers it: videos (`videoId`) with `status` numbers and labels.

Routes: `POST …/{operation}/create` → the video; `GET /videos/{videoId}`; `POST /files/?account=`
→ `{fileID}`. (Cancel is `DELETE /v1/jobs/{id}`.)
"""

from __future__ import annotations

from ...generations import ADMITTED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation
from ..rendering import MODERATED, artifacts, iso, progress, with_failure
from ..spec import CREATE, STATUS, UPLOAD, Route, Shape


def _status(gen: Generation) -> tuple[int, str]:
    if gen.state in (WAITING, ADMITTED):
        return 1, "Queued"
    if gen.state == SUBMITTED:
        return 1, "Processing"
    if gen.state == COMPLETED:
        return 2, "Completed"
    if gen.state == FAILED:
        return 5, "Moderated" if gen.error_code == MODERATED else "Failed"
    return 7, "Canceled"


def video(gen: Generation, ident: str) -> dict:
    number, label = _status(gen)
    urls = artifacts(gen)
    return with_failure(gen, {
        "videoId": ident,
        "account": gen.account or gen.pinned,
        "status": number,
        "statusFinal": gen.terminal,
        "statusLabel": label,
        "percent": int(round(progress(gen) * 100)),
        "videoURL": urls[0] if urls else None,
        "downloadURL": urls[0] if urls else None,
        "createTime": iso(gen.created),
        "error": None,
    })


def upload_answer(provider: str, account: str, result: dict) -> dict:
    return {"fileID": result["id"], "account": account}


SHAPE = Shape(
    kind="video", id_key="videoId", noun="Video", render=video,
    routes=(
        Route(CREATE, "/{operation:path}/create", "Create a MiniMax generation → {videoId}", suffix="/create"),
        Route(STATUS, "/videos/{videoId}", "Status of a MiniMax generation"),
        Route(UPLOAD, "/files", "Upload a file to one MiniMax account (raw bytes)"),
    ),
    upload_answer=upload_answer,
)
