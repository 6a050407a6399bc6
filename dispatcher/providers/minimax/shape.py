"""MiniMax as useapi answers it: videos (`videoId`) and images (`imageId`), each with `status`
numbers and labels.

Routes: `POST …/{operation}/create` → the video (`images/create` → the image); `GET /videos/{videoId}`;
`GET /images/{imageId}`; `POST /files/?account=` → `{fileID}`; `GET /account` (the accounts map,
as `GET /accounts`, for clients that call it so). (Cancel is `DELETE /v1/jobs/{id}`.) useapi's
listings (`GET /videos/`, `/images/`, `/files/`) read the MiniMax account's own library, which the
dispatcher does not keep: they answer 404 saying so.
"""

from __future__ import annotations

from pydantic import BaseModel

from ...generations import ADMITTED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation
from ..rendering import MODERATED, artifacts, iso, progress, with_failure
from ..spec import ABSENT, ACCOUNTS, CREATE, STATUS, UPLOAD, Route, Shape

LIBRARY = ("useapi lists the MiniMax account's own {what} (made here or on the website); the dispatcher keeps "
           "no such library. Read one with GET /v1/minimax/{path}/{{{key}}}, the running ones with GET "
           "/v1/minimax/scheduler")


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


def _common(gen: Generation) -> dict:
    number, label = _status(gen)
    urls = artifacts(gen)
    return {
        "account": gen.account or gen.pinned,
        "status": number,
        "statusFinal": gen.terminal,
        "statusLabel": label,
        "percent": int(round(progress(gen) * 100)),
        "videoURL": urls[0] if urls else None,  # useapi's name for the file's URL, images included
        "downloadURL": urls[0] if urls else None,
        "createTime": iso(gen.created),
        "error": None,
    }


def video(gen: Generation, ident: str) -> dict:
    return with_failure(gen, {"videoId": ident, **_common(gen)})


def image(gen: Generation, ident: str) -> dict:
    urls = artifacts(gen)
    return with_failure(gen, {"imageId": ident, **_common(gen), "imageURL": urls[0] if urls else None})


class _Status(BaseModel):
    account: str | None = None
    status: int
    statusFinal: bool
    statusLabel: str
    percent: int
    videoURL: str | None = None
    downloadURL: str | None = None
    createTime: str | None = None
    error: str | None = None
    code: int | None = None  # a failed generation's useapi code (422 moderated, 412, 596, 5xx)
    replyRef: str | None = None


class MiniMaxVideo(_Status):
    """A MiniMax video as `GET /v1/minimax/videos/{videoId}` answers it."""

    videoId: str


class MiniMaxImage(_Status):
    """A MiniMax image as `GET /v1/minimax/images/{imageId}` answers it."""

    imageId: str
    imageURL: str | None = None


def upload_answer(provider: str, account: str, result: dict) -> dict:
    return {"fileID": result["id"], "account": account, "name": result.get("name"), "url": result.get("url")}


IMAGE = Shape(kind="image", id_key="imageId", noun="Image", render=image, model=MiniMaxImage)

SHAPE = Shape(
    kind="video", id_key="videoId", noun="Video", render=video, model=MiniMaxVideo,
    variants=(("images/", IMAGE),),
    routes=(
        Route(CREATE, "/{operation:path}/create",
              "Create a MiniMax generation → {videoId} (images/create → {imageId})", suffix="/create"),
        Route(STATUS, "/videos/{videoId}", "Status of a MiniMax video"),
        Route(STATUS, "/images/{imageId}", "Status of a MiniMax image", operation="images/create"),
        Route(UPLOAD, "/files", "Upload a file to one MiniMax account (raw bytes)"),
        Route(ACCOUNTS, "/account", "MiniMax accounts configuration (as GET /accounts)"),
        Route(ABSENT, "/videos/", LIBRARY.format(what="videos", path="videos", key="videoId")),
        Route(ABSENT, "/images/", LIBRARY.format(what="images", path="images", key="imageId")),
        Route(ABSENT, "/files/", "useapi lists the files uploaded to the MiniMax account; the dispatcher keeps no "
                                 "such library. An upload answers its fileID: keep it."),
    ),
    upload_answer=upload_answer,
)
