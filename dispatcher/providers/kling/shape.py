"""Kling as useapi answers it (`/v1/kling`): tasks (`task_id`) with `status`, `status_name`,
`status_final` and `works[].resource`.

Routes: `POST /videos/text2video`, `POST /videos/image2video` → the task; `GET /tasks/{task_id}`.
(useapi's `DELETE /scheduler/{task_id}` only stops tracking and `DELETE /tasks/{task_id}` deletes
outputs upstream: cancel is `DELETE /v1/jobs/{id}`.) Status numbers are Kling's (5 submitted,
10 processing, 99 succeed, 50 failed) and 58 canceled, ours.
"""

from __future__ import annotations

from pydantic import BaseModel

from ...generations import ADMITTED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation
from ..rendering import artifacts, iso, progress, with_failure
from ..spec import CREATE, STATUS, Route, Shape


def _status(gen: Generation) -> tuple[int, str]:
    if gen.state in (WAITING, ADMITTED):
        return 5, "submitted"
    if gen.state == SUBMITTED:
        return 10, "processing"
    if gen.state == COMPLETED:
        return 99, "succeed"
    if gen.state == FAILED:
        return 50, "failed"
    return 58, "canceled"


def task(gen: Generation, ident: str) -> dict:
    number, name = _status(gen)
    return with_failure(gen, {
        "task_id": ident,
        "email": gen.account or gen.pinned,
        "type": gen.operation,
        "status": number,
        "status_name": name,
        "status_final": gen.terminal,
        "progress": int(round(progress(gen) * 100)),
        "works": [{"resource": {"resource": url}} for url in artifacts(gen)],
        "created": iso(gen.created),
        "error": None,
    })


class KlingTask(BaseModel):
    """A Kling task as `GET /v1/kling/tasks/{task_id}` answers it."""

    task_id: str
    email: str | None = None
    type: str
    status: int  # 5 submitted, 10 processing, 99 succeed, 50 failed, 58 canceled
    status_name: str
    status_final: bool
    progress: int
    works: list[dict] = []  # [{"resource": {"resource": <url>}}]
    created: str | None = None
    error: str | None = None
    code: int | None = None  # a failed task's useapi code (422 moderated, 412 out of credits, 596, 5xx)
    replyRef: str | None = None


SHAPE = Shape(
    kind="task", id_key="task_id", noun="Task", render=task, model=KlingTask,
    routes=(
        Route(CREATE, "/videos/text2video", "Create a Kling video from text → {task_id}",
              operation="videos/text2video"),
        Route(CREATE, "/videos/image2video", "Create a Kling video from an image → {task_id}",
              operation="videos/image2video"),
        Route(STATUS, "/tasks/{task_id}", "Status and results of a Kling task"),
    ),
)
