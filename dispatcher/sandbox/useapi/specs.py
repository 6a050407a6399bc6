"""What differs between useapi.net's per-provider APIs, as a table (from useapi's documentation
pages and its example clients): base path, account id field, job id key, `maxJobs` range, the
POST status, where the account id goes in the POST path, and how job ids are spelled."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    provider: str  # the sandbox's emulated service behind this API
    label: str  # human name in error messages
    base: str  # path under /useapi
    id_field: str  # account id in bodies, maps and scheduler rows
    job_key: str  # job id field in create/status answers and scheduler rows
    max_jobs: int  # maxJobs range is 1..max_jobs
    created_status: int  # status of a successful account POST
    id_in_path: bool  # POST /accounts/{id} (True) or POST /accounts (False)
    kind: str  # the word in ids: user:<n>-<provider>:<account>-<kind>:<upstream id>

    @property
    def post_hint(self) -> str:
        return f"POST /accounts/{self.id_field}" if self.id_in_path else "POST /accounts"

    def not_configured(self, ident: str | None = None) -> str:
        what = "Configuration not found" if ident is None else f"Configuration for {ident} not found"
        return f"{what}. To create configuration use {self.post_hint}."


SPECS: dict[str, Spec] = {
    "runwayml": Spec("runwayml", "Runway", "/v1/runwayml", "email", "taskId", 10, 200, True, "task"),
    "pixverse": Spec("pixverse", "PixVerse", "/v2/pixverse", "email", "video_id", 8, 201, True, "video"),
    "minimax": Spec("minimax", "MiniMax", "/v1/minimax", "account", "videoId", 10, 201, True, "video"),
    "kling": Spec("kling", "Kling", "/v1/kling", "email", "task_id", 50, 201, False, "task"),
    "riffusion": Spec("riffusion", "Riffusion", "/v1/riffusion", "user_id", "job_id", 10, 201, False, "job"),
}

USER_NUMBER = 1001  # the useapi.net user every registered sandbox token belongs to
ACCOUNT_EMAIL = "sandbox@useapi.example"
SECURED = "…secured…"
RETRY_AFTER = 3  # seconds, on a 429 for a busy account
RENEW_AT = 0.2  # Riffusion: renew once less than this fraction of the session is left


def masked(secret: str) -> str:
    """`abc…secured…xyz`: the first and last 3 characters of a secret."""
    return f"{secret[:3]}{SECURED}{secret[-3:]}" if len(secret) > 6 else SECURED


def job_id(spec: Spec, account: str, upstream_id: str, kind: str | None = None) -> str:
    """useapi's job id: it names the user and the account (Kling's is the bare numeric id)."""
    if spec.provider == "kling":
        return upstream_id
    return f"user:{USER_NUMBER}-{spec.provider}:{account}-{kind or spec.kind}:{upstream_id}"
