"""The adapter seam: what a login yields, what a poll answers, and how an adapter sends.

An adapter only speaks one upstream's wire format over httpx, like an httpx transport: the
core decides (which account, when, retry or not), the adapter sends. Adapters know nothing of
capacity, queues or the HTTP API. Each provider folder has its own (`<name>/adapter.py`).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import httpx

from ..errors import LoginFailed, UpstreamError


OCTET_STREAM = "application/octet-stream"  # an upload's type when the caller did not say
MODERATED = 422  # useapi's code for a job refused by moderation (a `Poll.error_code`, a create's status)


@dataclass(frozen=True)
class Session:
    """What a login or refresh yields."""

    account_id: str
    token: str  # what the adapter sends upstream
    expires_at: float  # epoch seconds
    issued_at: float
    jwt: dict  # the provider-shaped `jwt` object shown (masked) in GET
    refresh_token: str | None = None
    extra: dict = field(default_factory=dict)  # non-secret facts shown in GET (supportVideo, …)


@dataclass(frozen=True)
class Poll:
    state: str  # pending | running | succeeded | failed | canceled
    progress: float = 0.0  # 0..1
    artifacts: tuple[str, ...] = ()
    error: str | None = None
    # useapi's code for a failed job, as the adapter read it from the upstream's answer
    # (MODERATED for a prompt or output refused by moderation); None: a plain failure (500)
    error_code: int | None = None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "canceled")


class Adapter:
    """One upstream's wire format. Raise `UpstreamError(status=…)` for any non-success answer."""

    default_base_url: ClassVar[str] = ""
    path_prefix: ClassVar[str] = ""  # under the sandbox's shared base URL
    refresh_kind: str | None = None  # how sessions renew through this adapter; None: the spec's `refresh`

    def __init__(self, client: httpx.Client, base_url: str | None = None):
        self.client = client
        self.base = (base_url.rstrip("/") + self.path_prefix) if base_url else self.default_base_url

    # -- sessions -------------------------------------------------------------
    def login(self, credentials: dict) -> Session:
        raise NotImplementedError

    def refresh(self, credentials: dict, session: Session) -> Session:
        """Default: log in again with the stored credentials."""
        return self.login(credentials)

    # -- jobs -----------------------------------------------------------------
    def create(self, token: str, operation: str, payload: dict, idempotency_key: str) -> str:
        raise NotImplementedError

    def recover(self, token: str, idempotency_key: str) -> str | None:
        """After a create whose answer was lost: the upstream's id of the job it runs for this
        key, if it can tell. Default None: the upstream honours the `Idempotency-Key` itself, so
        sending the create again returns that job."""
        return None

    def poll(self, token: str, upstream_id: str) -> Poll:
        raise NotImplementedError

    def cancel(self, token: str, upstream_id: str) -> None:
        raise NotImplementedError

    def upload(self, token: str, data: bytes, name: str, content_type: str = OCTET_STREAM) -> dict:
        """Send a file (its name and MIME type travel with it); returns `{id, url}`."""
        raise UpstreamError("this provider does not take uploads", status=400)

    # -- helpers --------------------------------------------------------------
    def _send(self, method: str, path: str, *, login: bool = False, error_of: Callable[[httpx.Response], str], **kw):
        try:
            response = self.client.request(method, self.base + path, **kw)
        except httpx.TimeoutException:
            raise UpstreamError("upstream timed out", status=504) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}", status=502) from None
        if response.status_code >= 400:
            message = _safe(error_of, response)
            if login and response.status_code in (400, 401, 403):
                raise LoginFailed(message or "Unauthorized", status=401)
            retry_after = response.headers.get("Retry-After")
            raise UpstreamError(
                message or f"upstream answered {response.status_code}",
                status=response.status_code,
                retry_after=float(retry_after) if retry_after and _is_number(retry_after) else None,
            )
        try:
            return response.json()
        except ValueError:
            raise UpstreamError("upstream answered a body that is not JSON", status=502) from None


# -- small shared helpers for adapters -------------------------------------------


def jwt_claims(token: str) -> dict:
    """Claims of a JWT, unverified (we only read its expiry)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}


def iso_utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int((epoch % 1) * 1000):03d}Z"


def _safe(fn, response) -> str:
    try:
        return str(fn(response) or "")
    except Exception:  # an upstream body we cannot read: say so without echoing it
        return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def json_error(response: httpx.Response) -> str:
    body = response.json()
    return body.get("error") or body.get("message") or ""
