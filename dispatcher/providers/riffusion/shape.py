"""Riffusion as useapi answers it: music jobs (`job_id`).

Routes: `POST /music/create-prompt`, `/music/create-compose` → `{job_id, user_id, …}`;
`GET /music/?id=<job_id>` (a list, as useapi's `GET music`) and `GET /music/{job_id}`.
"""

from __future__ import annotations

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


SHAPE = Shape(
    kind="job", id_key="job_id", noun="Job", render=music,
    routes=(
        Route(CREATE, "/music/create-prompt", "Create music (create-prompt) → {job_id, user_id}",
              operation="music/create-prompt"),
        Route(CREATE, "/music/create-compose", "Create music (create-compose) → {job_id, user_id}",
              operation="music/create-compose"),
        Route(LIST, "/music", "Status and results of a music job (?id=job_id)"),
        Route(STATUS, "/music/{job_id}", "Status and results of a music job"),
    ),
)
