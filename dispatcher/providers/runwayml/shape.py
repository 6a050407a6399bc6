"""Runway as useapi answers it: tasks (`taskId`), uploads as assets whose ids name their account.

Routes: `POST …/{operation}/create` and `POST /gen3turbo/video` → the task; `GET /tasks/{taskId}`;
`DELETE /tasks/{taskId}` (cancel); `POST /assets/?email=&name=` (the file's `Content-Type`) →
`{assetId}`. A create naming one of our asset ids (`imageAssetId1`, `image_assetId`, …) runs on the
asset's account, as useapi's does. useapi's reads of the Runway account's own library (`GET
/tasks/`, `GET|DELETE /assets/{assetId}`, `GET /assets/`, `GET /frames/describe/{assetId}`, `GET
/text_to_image_preview/`) are not served: they answer 404 saying so.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from ...errors import ValidationError
from ...generations import ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation, decode_account, \
    encode_account
from ..rendering import artifacts, iso, progress, updated, with_failure
from ..spec import ABSENT, CANCEL, CREATE, STATUS, UPLOAD, Route, Shape

NAME = "runwayml"
_ASSET = re.compile(r"user:dispatcher-(?P<provider>[a-z0-9]+):(?P<account>[A-Za-z0-9_.@+~-]+?)"
                    r"-asset:(?P<upstream>[A-Za-z0-9_.@+~-]+)")


def task(gen: Generation, ident: str) -> dict:
    status = {
        WAITING: "THROTTLED", ADMITTED: "PENDING",
        SUBMITTED: "RUNNING" if gen.progress > 0 else "PENDING",
        COMPLETED: "SUCCEEDED", FAILED: "FAILED", CANCELED: "CANCELLED",
    }[gen.state]
    return with_failure(gen, {
        "taskId": ident,
        "id": gen.upstream_id,
        "taskType": gen.operation,
        "email": gen.account or gen.pinned,
        "createdAt": iso(gen.created),
        "updatedAt": iso(updated(gen)),
        "status": status,
        "progressRatio": round(progress(gen), 4),
        # unknown while the generation waits for a slot; 0 once it holds one
        "estimatedTimeToStartSeconds": None if gen.state == WAITING else 0,
        "error": None,
        "artifacts": [{"url": url} for url in artifacts(gen)],
    })


class Artifact(BaseModel):
    url: str


class RunwayTask(BaseModel):
    """A Runway task as `GET /v1/runwayml/tasks/{taskId}` answers it."""

    taskId: str
    id: str | None = None  # the upstream's task id, once it took the job
    taskType: str
    email: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    status: str  # THROTTLED (waiting for a slot), PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
    progressRatio: float
    estimatedTimeToStartSeconds: int | None = None
    error: str | None = None
    code: int | None = None  # a failed task's useapi code (422 moderated, 412 out of credits, 596, 5xx)
    artifacts: list[Artifact] = []
    replyRef: str | None = None


# -- asset ids: they embed the account that owns the upload ------------------------------


def asset_id(account: str, upstream: str) -> str:
    return f"user:dispatcher-{NAME}:{encode_account(account)}-asset:{encode_account(upstream)}"


def parse_asset_id(value) -> tuple[str, str] | None:
    """(account, upstream asset id) of one of our asset ids, else None."""
    found = _ASSET.fullmatch(value) if isinstance(value, str) else None
    if found is None or found["provider"] != NAME:
        return None
    try:
        return decode_account(found["account"]), decode_account(found["upstream"])
    except ValueError:
        return None


def resolve_assets(payload: dict, pin: str | None) -> tuple[dict, str | None]:
    """Replace our asset ids by the upstream's; the create runs on the account owning them."""
    owners, out = set(), {}
    for key, value in payload.items():
        found = parse_asset_id(value)
        if found:
            owners.add(found[0])
            value = found[1]
        out[key] = value
    if len(owners) > 1:
        raise ValidationError(f"The assets belong to different accounts: {', '.join(sorted(owners))}")
    owner = owners.pop() if owners else None
    if owner is not None and pin is not None and pin != owner:
        raise ValidationError(f"The asset belongs to account {owner}, not to {pin}")
    return out, owner or pin


def upload_answer(provider: str, account: str, result: dict) -> dict:
    return {"assetId": asset_id(account, str(result["id"])), "email": account, "name": result.get("name"),
            "url": result.get("url")}


_LIBRARY = ("useapi reads this from the Runway account's own library (jobs and files made here or on the "
            "website); the dispatcher keeps no such library. ")
_TASKS = _LIBRARY + ("Read one task with GET /v1/runwayml/tasks/{taskId}, the running ones with GET "
                     "/v1/runwayml/scheduler")
_ASSETS = _LIBRARY + "An upload (POST /v1/runwayml/assets/) answers its assetId and url: keep them"


SHAPE = Shape(
    kind="task", id_key="taskId", noun="Task", render=task, model=RunwayTask,
    routes=(
        Route(CREATE, "/{operation:path}/create", "Create a Runway generation → {taskId}", suffix="/create"),
        Route(CREATE, "/gen3turbo/video", "Create a Runway video to video generation → {taskId}",
              operation="gen3turbo/video"),
        Route(STATUS, "/tasks/{taskId}", "Status of a Runway generation"),
        Route(CANCEL, "/tasks/{taskId}", "Cancel a Runway generation"),
        Route(UPLOAD, "/assets", "Upload a file to one Runway account (raw bytes) → {assetId}"),
        Route(ABSENT, "/tasks/", _TASKS),
        Route(ABSENT, "/assets/", _ASSETS),
        Route(ABSENT, "/assets/{assetId}", _ASSETS),
        Route(ABSENT, "/assets/{assetId}", _ASSETS, method="DELETE"),
        Route(ABSENT, "/frames/describe/{assetId}", "Describing an image is a Runway website call useapi makes "
              "synchronously; the dispatcher runs generations only"),
        Route(ABSENT, "/text_to_image_preview/", "Text-to-image previews are a Runway website call useapi makes "
              "synchronously; the dispatcher runs generations only (POST /v1/runwayml/frames/create makes images)"),
    ),
    upload_answer=upload_answer, upload_name=True, prepare=resolve_assets,
)
