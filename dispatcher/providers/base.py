"""What every provider module declares, and the adapter seam.

A provider module is a `ProviderSpec` plus an `Adapter` subclass. The spec is
data the core reads (id field, credentials, maxJobs range, how to refresh,
how to render the stored JWT); the adapter only speaks the upstream's wire
format over httpx, like an httpx transport: the core decides, the adapter
sends. Adapters know nothing of capacity, queues or the HTTP API.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import httpx

from ..errors import LoginFailed, UpstreamError


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

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "canceled")


class Adapter:
    """One upstream's wire format. Raise `UpstreamError(status=…)` for any non-success answer."""

    default_base_url: ClassVar[str] = ""
    path_prefix: ClassVar[str] = ""  # under the sandbox's shared base URL

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

    def poll(self, token: str, upstream_id: str) -> Poll:
        raise NotImplementedError

    def cancel(self, token: str, upstream_id: str) -> None:
        raise NotImplementedError

    def upload(self, token: str, data: bytes, name: str) -> dict:
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


# -- account ids ------------------------------------------------------------------
# An account id travels raw in URL paths (`{prefix}/accounts/{id}`), in Redis key names and in
# metric labels. Every character it may hold is one a URL path segment carries as it is
# (RFC 3986 pchar: no `/`, `?`, `#`, `%`, space, control or non-ASCII character), and dots
# only separate non-empty parts (no `.`/`..` segment for a client to normalise away).
ID_MAX = 254  # the longest email address a mail server accepts
_ATOM = r"[A-Za-z0-9!$&'*+=_~-]+"  # RFC 5322 atext that is also a raw URL path character
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_ID = re.compile(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
EMAIL_RULE = ("an email address (letters, digits and ! $ & ' * + = _ ~ - in dot-separated parts "
              "before the @, a domain name after it)")
NUMERIC_ID = re.compile(r"[0-9]{1,32}")
NUMERIC_RULE = "the numeric account id (digits only)"
TOKEN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_~+@-]*(?:\.[A-Za-z0-9_~+@-]+)*")
TOKEN_RULE = "letters, digits and _ ~ + @ - in dot-separated parts, starting with a letter or digit"
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def id_problem(spec: "ProviderSpec", value: str) -> str | None:
    """Why `value` cannot be an account id of `spec` (None when it can)."""
    if len(value) <= ID_MAX and spec.id_pattern.fullmatch(value):
        return None
    return f"{spec.id_field} must be {spec.id_rule}, at most {ID_MAX} characters"


def header_safe(value: str) -> bool:
    """True when `value` can be sent as an HTTP header value unchanged: printable ASCII only,
    spaces inside but not at either end (a header parser trims those), no CR, LF, NUL, tab or
    other control character, nothing past ASCII."""
    return bool(_HEADER_SAFE.fullmatch(value))


POLL_MIN_SHARE = 0.1  # a poll waits at least this share of the job's age (completion seen within ~10 %)


@dataclass(frozen=True)
class ProviderSpec:
    """Everything the core needs to know about a provider, as data."""

    name: str  # url segment and key tag: "runwayml"
    title: str
    api_prefix: str  # "/v1/runwayml"
    id_field: str  # "email" | "account" | "user_id"
    id_from_login: bool  # Riffusion: the id comes from the upstream login
    credential_fields: tuple[str, ...]  # body fields the user posts
    max_jobs: tuple[int, int]
    recommended_max_jobs: int | None
    refresh: str  # "refresh_token" | "relogin" | "none"
    adapter: type[Adapter]
    render_jwt: Callable[[dict], dict]  # stored jwt -> masked jwt for GET
    render_credentials: Callable[[dict], dict]  # stored credentials -> masked fields for GET
    operations: tuple[str, ...] = ()  # known operation paths ("videos/create", …); empty: any
    poll_backoff: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)  # seconds between polls, last repeats
    # Poll once inside the start step, right after the upstream id is saved: an answer that is
    # already final (instant jobs, early rejections) finishes without another RQ job or a
    # scheduler round; otherwise polling goes on after poll_backoff[0]. Costs one status call.
    poll_at_submit: bool = True
    # what an account id may look like (see "account ids" above); the rule's words for a 400
    id_pattern: re.Pattern = TOKEN_ID
    id_rule: str = TOKEN_RULE
    # credential fields the upstream receives as an HTTP header value (a pasted token, a browser
    # cookie): refused at validation unless every character can travel in a header
    header_fields: tuple[str, ...] = ()

    def backoff(self, attempt: int) -> float:
        return self.poll_backoff[min(attempt, len(self.poll_backoff) - 1)]

    def next_poll(self, attempt: int, elapsed: float, progress: float) -> float:
        """Seconds until the next poll, after `attempt` polls, `elapsed` seconds after the upstream
        accepted the job, which reports `progress` (0..1; 0 when the provider tells none).

        Without progress: the backoff. With it: half the remaining time the progress implies,
        kept between `poll_backoff`'s first and last steps and at least POLL_MIN_SHARE of the
        elapsed time. A long job is then polled at the slow end of the range from its second
        poll on, instead of walking through the short steps meant for short jobs (with many
        generations submitted together, those early polls come in waves), and polls close in
        as it nears its end, so its completion is seen sooner than a fixed 10 s tail would."""
        base = self.backoff(attempt)
        if not 0.0 < progress < 1.0 or elapsed <= 0.0:
            return base
        remaining = elapsed * (1.0 - progress) / progress
        low, high = self.poll_backoff[0], self.poll_backoff[-1]
        return min(max(0.5 * remaining, low, POLL_MIN_SHARE * elapsed), high)


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
