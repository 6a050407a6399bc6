"""Provider-shaped views of a generation, answered as useapi answers them.

Pure functions of a `Generation` (no Redis, no HTTP): the provider-shaped job
endpoints (`dispatcher.api.compat`) and the `replyUrl` callbacks render the same
object, so a webhook carries exactly what `GET tasks/{taskId}` (Runway),
`GET videos/{id}` (PixVerse, MiniMax) or `GET music/{job_id}` (Riffusion) answers.

A generation created through a provider-shaped endpoint carries its shape name in
`extra["shape"]` (the provider name); its public id is the useapi-style alias of
its internal id (`generations.public_id`), with the pinned account embedded.

State → provider status (the dispatcher's states on the left):

| state     | Runway `status` | PixVerse `video_status_name` | MiniMax `status`/`statusLabel` | Riffusion `status` |
|-----------|-----------------|------------------------------|--------------------------------|--------------------|
| waiting   | THROTTLED       | QUEUED (5)                   | 1 Queued                       | queued             |
| admitted  | PENDING         | QUEUED (5)                   | 1 Queued                       | queued             |
| submitted | PENDING/RUNNING | GENERATING (5)               | 1 Processing                   | running            |
| completed | SUCCEEDED       | COMPLETED (1)                | 2 Completed                    | completed          |
| failed    | FAILED          | FAILED (8) / MODERATED (7)   | 5 Failed / 5 Moderated         | failed             |
| canceled  | CANCELLED       | CANCELED (9)                 | 7 Canceled                     | canceled           |

`waiting` is a generation holding no slot yet (every account busy, cooling down,
or its pinned account full): useapi's THROTTLED. A failed generation carries
`error` and `code` (useapi's status codes: 412 out of credits, 422 moderated,
596 account on hold / pending error, 5xx upstream failure).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Callable

from .generations import (ADMITTED, CANCELED, COMPLETED, FAILED, SUBMITTED, WAITING, Generation,
                          public_id)

# provider -> (kind word inside the public id, the key useapi names the id with)
KINDS = {"runwayml": ("task", "taskId"), "pixverse": ("video", "video_id"),
         "minimax": ("video", "videoId"), "riffusion": ("job", "job_id")}
MODERATED = 422


def shape_of(gen: Generation) -> str | None:
    """The shape a generation was created with (None: created through the generic API)."""
    shape = (gen.extra or {}).get("shape")
    return shape if shape in KINDS else None


def job_id(gen: Generation, shape: str | None = None) -> str:
    """The id a provider-shaped endpoint answers for this generation."""
    shape = shape or shape_of(gen) or gen.provider
    kind = KINDS[shape][0]
    return public_id(gen.id, kind, gen.pinned)


def render(gen: Generation, shape: str | None = None) -> dict:
    """The provider-shaped status object (with `replyRef`), as the status endpoint answers it."""
    shape = shape or shape_of(gen) or gen.provider
    body = _RENDERERS[shape](gen, job_id(gen, shape))
    body["replyRef"] = gen.reply_ref
    return body


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def elapsed(seconds: float) -> str:
    """useapi's `elapsed`: "MM:SS" (minutes keep counting past 59)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def account_error_code(error: str | None) -> int:
    """useapi's status code for an account that left rotation, from its `error` text:
    412 when it ran out of credits, else 596 (on hold, or a pending error such as a failed refresh)."""
    found = re.search(r"\((\d{3})\)", error or "")
    if found and found.group(1) == "412":
        return 412
    return 596


def scheduler_row(provider: str, id_field: str, item: dict, gen: Generation | None,
                  now: float | None = None) -> dict:
    """One `executing` entry of useapi's `GET …/scheduler/available`:
    `{<id>, <account>, started (ISO), elapsed ("MM:SS"), replyUrl, replyRef}`."""
    now = time.time() if now is None else now
    key = KINDS.get(provider, ("job", "id"))[1]
    ident = job_id(gen) if gen is not None and shape_of(gen) else item["id"]
    started = float(item["started"])
    return {key: ident, id_field: item["account"], "started": iso(started), "elapsed": elapsed(now - started),
            "replyUrl": gen.reply_url if gen else None, "replyRef": gen.reply_ref if gen else None}


# -- one renderer per provider ----------------------------------------------------


def _artifacts(gen: Generation) -> list[str]:
    if gen.state != COMPLETED or not gen.result:
        return []
    return [u for u in gen.result.get("artifacts") or () if isinstance(u, str)]


def _failure(gen: Generation) -> tuple[str | None, int | None]:
    if gen.state == FAILED:
        return gen.error or "failed", gen.error_code or 500
    if gen.state == CANCELED:
        return gen.error or "canceled", None
    return None, None


def _updated(gen: Generation) -> float:
    return max(t for t in (gen.created, gen.admitted_at, gen.submitted_at, gen.finished_at) if t is not None)


def runway_task(gen: Generation, ident: str) -> dict:
    status = {
        WAITING: "THROTTLED", ADMITTED: "PENDING",
        SUBMITTED: "RUNNING" if gen.progress > 0 else "PENDING",
        COMPLETED: "SUCCEEDED", FAILED: "FAILED", CANCELED: "CANCELLED",
    }[gen.state]
    error, code = _failure(gen)
    body = {
        "taskId": ident,
        "id": gen.upstream_id,
        "taskType": gen.operation,
        "email": gen.account or gen.pinned,
        "createdAt": iso(gen.created),
        "updatedAt": iso(_updated(gen)),
        "status": status,
        "progressRatio": round(1.0 if gen.state == COMPLETED else gen.progress, 4),
        # unknown while the generation waits for a slot; 0 once it holds one
        "estimatedTimeToStartSeconds": None if gen.state == WAITING else 0,
        "error": error,
        "artifacts": [{"url": url} for url in _artifacts(gen)],
    }
    if code is not None:
        body["code"] = code
    return body


def pixverse_video(gen: Generation, ident: str) -> dict:
    if gen.state in (WAITING, ADMITTED):
        number, name = 5, "QUEUED"
    elif gen.state == SUBMITTED:
        number, name = 5, "GENERATING"
    elif gen.state == COMPLETED:
        number, name = 1, "COMPLETED"
    elif gen.state == FAILED:
        number, name = (7, "MODERATED") if gen.error_code == MODERATED else (8, "FAILED")
    else:
        number, name = 9, "CANCELED"
    urls = _artifacts(gen)
    error, code = _failure(gen)
    body = {
        "video_id": ident,
        "email": gen.account or gen.pinned,
        "video_status": number,
        "video_status_name": name,
        "video_status_final": gen.terminal,
        "progress": int(round((1.0 if gen.state == COMPLETED else gen.progress) * 100)),
        "url": urls[0] if urls else None,
        "create_time": iso(gen.created),
        "error": error,
    }
    if code is not None:
        body["code"] = code
    return body


def minimax_video(gen: Generation, ident: str) -> dict:
    if gen.state in (WAITING, ADMITTED):
        number, label = 1, "Queued"
    elif gen.state == SUBMITTED:
        number, label = 1, "Processing"
    elif gen.state == COMPLETED:
        number, label = 2, "Completed"
    elif gen.state == FAILED:
        number, label = 5, "Moderated" if gen.error_code == MODERATED else "Failed"
    else:
        number, label = 7, "Canceled"
    urls = _artifacts(gen)
    error, code = _failure(gen)
    body = {
        "videoId": ident,
        "account": gen.account or gen.pinned,
        "status": number,
        "statusFinal": gen.terminal,
        "statusLabel": label,
        "percent": int(round((1.0 if gen.state == COMPLETED else gen.progress) * 100)),
        "videoURL": urls[0] if urls else None,
        "downloadURL": urls[0] if urls else None,
        "createTime": iso(gen.created),
        "error": error,
    }
    if code is not None:
        body["code"] = code
    return body


def riffusion_music(gen: Generation, ident: str) -> dict:
    status = {WAITING: "queued", ADMITTED: "queued", SUBMITTED: "running", COMPLETED: "completed",
              FAILED: "failed", CANCELED: "canceled"}[gen.state]
    urls = _artifacts(gen)
    error, code = _failure(gen)
    body = {
        "id": ident,
        "job_id": ident,
        "user_id": gen.account or gen.pinned,
        "status": status,
        "created_at": iso(gen.created),
        "download_url": urls[0] if urls else None,
        "audio_urls": urls,
        "error": error,
    }
    if code is not None:
        body["code"] = code
    return body


_RENDERERS: dict[str, Callable[[Generation, str], dict]] = {
    "runwayml": runway_task, "pixverse": pixverse_video, "minimax": minimax_video, "riffusion": riffusion_music,
}
