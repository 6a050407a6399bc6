"""What a provider folder declares: its spec, the shape useapi answers its jobs in, and demo data.

`dispatcher/providers/<name>/__init__.py` defines `SPEC`, a `ProviderSpec`: data the core reads
(id field, credentials, maxJobs range, how to refresh, how to render the stored JWT, the
operations it allows), its adapter class (`<name>/adapter.py`), its `Shape` (`<name>/shape.py`:
the status object useapi answers, the words of its ids, and the routes it serves them on) and
its `Demo`. The registry (`providers/__init__.py`) discovers the folders; nothing outside a
folder names its provider.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import NotFound
from .adapter import Adapter
from .ids import TOKEN_ID, TOKEN_RULE

if TYPE_CHECKING:
    from ..generations import Generation
    from .useapi import UseapiDialect

CREATE, STATUS, CANCEL, LIST, UPLOAD, ABSENT, ACCOUNTS = (
    "create", "status", "cancel", "list", "upload", "absent", "accounts")


@dataclass(frozen=True)
class Route:
    """One useapi-shaped job route, under the provider's `api_prefix`.

    - CREATE: `path` may hold `{operation:path}`, the operation being that plus `suffix`
      (`/{operation:path}/create` → `gen3turbo/create`); otherwise `operation` is fixed.
    - STATUS / CANCEL: `path` holds `{<id_key>}` (the provider-shaped id); `operation`, when
      given, picks the shape variant the route serves (MiniMax's `GET /images/{imageId}`).
    - LIST: `GET path?id=<id>` answers a list of one status object (Riffusion's `GET music`).
    - UPLOAD: raw bytes to one account (`?<id_field>=`); `Shape.upload_answer` shapes the answer.
    - ABSENT: a useapi route this provider does not serve here (the upstream's own library:
      `GET /tasks/`, `GET /assets/{id}`…): answers 404 with `summary` as the reason.
    - ACCOUNTS: `GET path` answers the accounts map, as `GET …/accounts` (another name clients use)."""

    kind: str
    path: str
    summary: str = ""
    operation: str | None = None
    suffix: str = ""
    method: str = "GET"  # ABSENT routes only


@dataclass(frozen=True)
class Shape:
    """How useapi answers one provider's jobs."""

    kind: str  # the word inside a public id: "task" (user:dispatcher-runwayml:…-task:<hex>)
    id_key: str  # the name useapi gives that id: "taskId"
    noun: str  # in "Task <id> not found"
    render: Callable[[Generation, str], dict]  # the status object, given the generation and its public id
    routes: tuple[Route, ...] = ()
    # (provider, account, adapter's {id, url}) -> the upload's answer
    upload_answer: Callable[[str, str, dict], dict] | None = None
    upload_name: bool = False  # the upload takes `?name=` (documented as a query parameter)
    # (payload, pin) -> (payload, pin) before a create is submitted: e.g. Runway's asset ids
    # carry the account that owns them, and a create naming one runs there
    prepare: Callable[[dict, str | None], tuple[dict, str | None]] | None = None
    model: type | None = None  # a pydantic model of the status object (the OpenAPI document's)
    # (operation prefix, Shape) pairs: operations answered in another shape (MiniMax's
    # `images/…` answer `imageId` objects); `routes` and uploads stay on the main shape
    variants: tuple[tuple[str, "Shape"], ...] = ()

    def for_operation(self, operation: str | None) -> "Shape":
        """The shape a generation of `operation` answers in."""
        for prefix, variant in self.variants:
            if operation and operation.startswith(prefix):
                return variant
        return self


@dataclass(frozen=True)
class DemoAccount:
    upstream: dict  # the sandbox user (POST /_sandbox/users, `provider` added)
    body: dict  # the account body posted to the dispatcher (maxJobs included)
    path_id: str | None  # None: the id comes from the upstream login
    sandbox_fields: tuple[str, ...] = ()  # fields of the sandbox's answer copied into `body` (a minted token)


@dataclass(frozen=True)
class Demo:
    operation: str  # what the demo submits
    accounts: Callable[[], list[DemoAccount]]  # fresh credentials on every call


def email_password_accounts(*accounts: tuple[str, int]) -> list[DemoAccount]:
    """Demo accounts of a provider that logs in with email + password: (email, maxJobs) each,
    a fresh random password every call."""
    out = []
    for email, max_jobs in accounts:
        password = secrets.token_urlsafe(12)
        out.append(DemoAccount({"email": email, "password": password},
                               {"email": email, "password": password, "maxJobs": max_jobs}, email))
    return out


class UnknownOperation(NotFound):
    """A create for an operation the provider does not declare: nothing is stored."""

    def __init__(self, spec: "ProviderSpec", operation: str):
        shown = operation if len(operation) <= 80 else operation[:80] + "…"
        super().__init__(f"Unknown operation {shown!r} for {spec.title}; operations: {', '.join(spec.operations)}")
        self.operations = spec.operations


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
    shape: Shape  # how useapi answers this provider's jobs, and where it serves them
    demo: Demo | None = None  # what `dispatcher demo` registers and submits (sandbox accounts)
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
    session_key: str = "jwt"  # the name useapi shows the (masked) session under in an account GET
    useapi: "UseapiDialect | None" = None  # how useapi.net serves it (`<name>/useapi.py`); None: direct only

    def check_operation(self, operation: str) -> None:
        """404 (with the known ones) for an operation this provider does not declare."""
        if self.operations and operation not in self.operations:
            raise UnknownOperation(self, operation)

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
