"""The answer shapes of useapi.net, per provider: accounts (secrets always masked), job status,
and scheduler rows. Written from useapi's documentation pages and example clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common import iso
from .specs import SECURED, masked
from .state import Account, ApiJob

Media = Callable[[str], str]  # medium name -> absolute URL on the sandbox
FAILED = "upstream generation failed"
MODERATED = "prompt was moderated"
CANCELLED = "generation was cancelled"


# --------------------------------------------------------------------------- accounts
def account_view(account: Account) -> dict[str, Any]:
    s, p, jobs = account.session, account.spec.provider, account.max_jobs
    exp, iat = s["exp"], s["iat"]
    if p == "runwayml":
        out: dict[str, Any] = {"email": account.id, "password": SECURED, "maxJobs": jobs,
                               "jwt": {"token": masked(s["token"]), "exp": exp, "iat": iat, "id": s["id"]}}
    elif p == "pixverse":
        out = {"email": account.id, "password": SECURED, "maxJobs": jobs,
               "jwt": {"AccountId": s["AccountId"], "ExpireTime": int(exp), "ExpireTimeUTC": iso(exp),
                       "Username": s["Username"], "token": masked(s["token"])}}
    elif p == "minimax":
        out = {"account": account.id,
               "jwt": {"token": masked(s["token"]), "user": dict(s["user"]), "exp": exp, "iat": iat,
                       "iat_Issued": iso(iat), "exp_Expire": iso(exp)},
               "maxJobs": jobs, "supportVideo": account.user.support_video,
               "supportMusic": account.user.support_music}
    elif p == "kling":
        out = {"email": account.id, "session": {"userId": s["userId"], "ExpireTime": int(exp),
                                                "ExpireTimeUTC": iso(exp)},
               "maxJobs": jobs, "password": SECURED}
    else:  # riffusion
        out = {"user_id": account.id, "maxJobs": jobs,
               "jwt": {"expires_at": int(exp), "expires_in": s["expires_in"], "refresh_token": SECURED,
                       "access_token": SECURED, "expires_at_UTC": iso(exp), "token_type": "bearer",
                       "user": {"id": account.id}}}
    if account.error:
        out["error"] = account.error
    return out


# --------------------------------------------------------------------------- jobs
def outcome(api_job: ApiJob, now: float) -> tuple[str, str | None, int | None]:
    """(phase, error, code): phase is pending | running | succeeded | failed | moderated | canceled.

    A generation the sandbox fails (`[fail]` in its prompt) counts as moderated when its prompt
    also says `[moderation]`: useapi then answers code 422."""
    phase = api_job.job.phase(now)
    if phase == "failed":
        text = " ".join(str(v) for v in api_job.job.payload.values() if isinstance(v, str))
        if "[moderation]" in text:
            return "moderated", MODERATED, 422
        return "failed", FAILED, 500
    if phase == "canceled":
        return phase, CANCELLED, 500
    return phase, None, None


def _media_name(api_job: ApiJob) -> str:
    ext = "wav" if api_job.account.spec.provider == "riffusion" else "gif"
    return f"{api_job.job.id}.{ext}"


def _errors(out: dict[str, Any], error: str | None, code: int | None) -> dict[str, Any]:
    if error is not None:
        out["error"] = error
        out["code"] = code
    return out


def _replies(out: dict[str, Any], api_job: ApiJob) -> dict[str, Any]:
    if api_job.reply_url:
        out["replyUrl"] = api_job.reply_url
    if api_job.reply_ref:
        out["replyRef"] = api_job.reply_ref
    return out


def runway_task(api_job: ApiJob, now: float, media: Media) -> dict[str, Any]:
    phase, error, code = outcome(api_job, now)
    job = api_job.job
    names = {"pending": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "canceled": "CANCELLED"}
    start_at = job.created + 0.1 * job.duration
    out = {"taskId": api_job.id, "status": names.get(phase, "FAILED"), "createdAt": iso(job.created),
           "progressRatio": round(job.progress(now), 4),
           "estimatedTimeToStartSeconds": max(0, round(start_at - now)) if phase == "pending" else 0,
           "artifacts": [{"url": media(_media_name(api_job))}] if phase == "succeeded" else [],
           "error": error}
    if code is not None:
        out["code"] = code
    return out


def pixverse_video(api_job: ApiJob, now: float, media: Media) -> dict[str, Any]:
    phase, error, code = outcome(api_job, now)
    status, name = {"pending": (5, "QUEUED"), "running": (10, "GENERATING"), "succeeded": (1, "COMPLETED"),
                    "moderated": (7, "MODERATED")}.get(phase, (8, "FAILED"))
    out = {"video_id": api_job.id, "video_status": status, "video_status_name": name,
           "video_status_final": phase not in ("pending", "running"),
           "progress": int(api_job.job.progress(now) * 100), "created_at": iso(api_job.job.created),
           "url": media(_media_name(api_job)) if phase == "succeeded" else None}
    return _errors(out, error, code)


def minimax_video(api_job: ApiJob, now: float, media: Media) -> dict[str, Any]:
    phase, error, code = outcome(api_job, now)
    status, label = {"pending": (1, "processing"), "running": (1, "processing"),
                     "succeeded": (2, "completed")}.get(phase, (5, phase if phase != "canceled" else "failed"))
    url = media(_media_name(api_job)) if phase == "succeeded" else None
    out = {"videoId": api_job.id, "id": api_job.job.id, "status": status, "statusLabel": label,
           "statusFinal": status != 1, "percent": int(api_job.job.progress(now) * 100),
           "videoURL": url, "downloadURL": url}
    if api_job.kind == "image":
        out["imageId"] = api_job.id
    return _errors(out, error, code)


def kling_task(api_job: ApiJob, now: float, media: Media) -> dict[str, Any]:
    phase, error, code = outcome(api_job, now)
    status, name = {"pending": (5, "submitted"), "running": (10, "processing"),
                    "succeeded": (99, "succeed")}.get(phase, (50, "failed"))
    works = [{"resource": {"resource": media(_media_name(api_job))}}] if phase == "succeeded" else []
    out = {"task_id": api_job.id, "status": status, "status_name": name, "status_final": status in (99, 50),
           "progress": int(api_job.job.progress(now) * 100), "works": works}
    return _errors(out, error, code)


def riffusion_job(api_job: ApiJob, now: float, media: Media) -> dict[str, Any]:
    phase, error, code = outcome(api_job, now)
    status = {"pending": "queued", "running": "running", "succeeded": "completed"}.get(phase, "failed")
    url = media(_media_name(api_job)) if phase == "succeeded" else None
    out = {"job_id": api_job.id, "user_id": api_job.account.id, "status": status,
           "audio_urls": [url] if url else [], "download_url": url}
    return _errors(out, error, code)


JOB_VIEWS = {"runwayml": runway_task, "pixverse": pixverse_video, "minimax": minimax_video,
             "kling": kling_task, "riffusion": riffusion_job}


def job_view(api_job: ApiJob, now: float, media: Media) -> dict[str, Any]:
    return _replies(JOB_VIEWS[api_job.account.spec.provider](api_job, now, media), api_job)


# --------------------------------------------------------------------------- scheduler
def elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def scheduler_row(api_job: ApiJob, now: float) -> dict[str, Any]:
    spec = api_job.account.spec
    row: dict[str, Any] = {spec.job_key: api_job.id, spec.id_field: api_job.account.id}
    if api_job.kind == "image":
        row["imageId"] = api_job.id
    row.update({"started": iso(api_job.started), "elapsed": elapsed(now - api_job.started),
                "replyUrl": api_job.reply_url, "replyRef": api_job.reply_ref})
    return row
