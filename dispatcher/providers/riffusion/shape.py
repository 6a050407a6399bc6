"""Riffusion as useapi answers it: music jobs (`job_id`).

Routes: `POST /music/create-prompt`, `/music/create-compose` → `{job_id, user_id, …}`;
`GET /music/?id=<job_id>` (a list, as useapi's `GET music`) and `GET /music/{job_id}`.
"""

from __future__ import annotations

from pydantic import BaseModel

from ...generations import ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation
from ..rendering import artifacts, iso, with_failure
from ..spec import CREATE, LIST, STATUS, Route, Shape

_STATUS = {WAITING: "queued", ADMITTED: "queued", SUBMITTED: "running", COMPLETED: "completed",
           FAILED: "failed", CANCELED: "canceled"}


def music(gen: Generation, ident: str) -> dict:
    urls = artifacts(gen)
    return with_failure(gen, {
        "id": ident,
        "job_id": ident,
        "user_id": gen.account or gen.pinned,
        "status": _STATUS[gen.state],
        "created_at": iso(gen.created),
        "download_url": urls[0] if urls else None,
        "audio_urls": urls,
        "error": None,
    })


class RiffusionMusic(BaseModel):
    """A Riffusion music job as `GET /v1/riffusion/music/{job_id}` answers it."""

    id: str
    job_id: str
    user_id: str | None = None
    status: str  # queued, running, completed, failed, canceled
    created_at: str | None = None
    download_url: str | None = None
    audio_urls: list[str] = []
    error: str | None = None
    code: int | None = None  # a failed job's useapi code (422 moderated, 412 out of credits, 596, 5xx)
    replyRef: str | None = None


SHAPE = Shape(
    kind="job", id_key="job_id", noun="Job", render=music, model=RiffusionMusic,
    routes=(
        Route(CREATE, "/music/create-prompt", "Create music (create-prompt) → {job_id, user_id}",
              operation="music/create-prompt"),
        Route(CREATE, "/music/create-compose", "Create music (create-compose) → {job_id, user_id}",
              operation="music/create-compose"),
        Route(LIST, "/music", "Status and results of a music job (?id=job_id)"),
        Route(STATUS, "/music/{job_id}", "Status and results of a music job"),
    ),
)
