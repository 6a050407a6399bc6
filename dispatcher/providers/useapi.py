"""The `useapi` upstream kind: a provider reached through useapi.net's documented API.

The dispatcher keeps doing what useapi does not: the waiting line, leases, priorities of its own.
useapi logs in and holds each account's provider session; this adapter
- forwards an account POST (the user's body, `maxJobs` included) to useapi's account endpoint
  and reads the session expiry useapi shows (`jwt.exp`, `jwt.expires_at`, `jwt.ExpireTime`,
  `session.ExpireTime`);
- creates every generation pinned to the account our semaphore admitted (`email`, `account` or
  `user_id`, plus useapi's per-request `maxJobs` = ours), with `replyRef` = our generation id,
  which `recover` looks for in useapi's scheduler after an ambiguous create (useapi takes no
  idempotency key);
- polls useapi's status endpoint and reads its answer with the provider's `UseapiDialect`
  (declared in the provider's folder, `<name>/useapi.py`).

A "token" here is no secret: useapi's Bearer token is the team's (`DISPATCHER_USEAPI_TOKEN`), and
a session's `token` only names the account to pin and the expiry it was read with (`pin_token`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import httpx

from ..errors import LoginFailed, UpstreamError
from .adapter import OCTET_STREAM, Adapter, Poll, Session, iso_utc, json_error

# where useapi shows a session's expiry and issue time, per provider (the first found wins)
EXPIRY_PATHS = (("jwt", "exp"), ("jwt", "expires_at"), ("jwt", "ExpireTime"), ("session", "ExpireTime"))
ISSUED_PATHS = (("jwt", "iat"),)
RELOGIN, NONE, UPSTREAM = "relogin", "none", "upstream"  # how a session is renewed through useapi


class SessionNotRenewed(LoginFailed):
    """useapi holds a session it did not renew (and we cannot): the account leaves rotation
    with this message, which says how long the session has left."""


@dataclass(frozen=True)
class UseapiDialect:
    """What differs between providers at useapi (each provider folder declares one)."""

    id_key: str  # the id a create answers: "taskId" | "video_id" | "videoId" | "task_id" | "job_id"
    status_path: str  # "/tasks/{id}"
    read: Callable[[dict], Poll]  # a status answer -> Poll
    account_path_id: bool = True  # POST /accounts/{id} (else POST /accounts, the id in the body)
    session_key: str = "jwt"  # where the account answer holds the session ("session" for Kling)
    refresh: str = RELOGIN  # RELOGIN: re-POST the stored credentials; UPSTREAM: useapi renews it;
    #                          NONE: a pasted token nobody can renew (flag before it expires)
    # upload: (path, the query parameter naming the account, answer -> {id, url})
    upload: tuple[str, str, Callable[[dict], dict]] | None = None
    create_fields: dict = field(default_factory=dict)  # extra fields every create carries


def pin_token(account_id: str, expires_at: float) -> str:
    """A session's `token` in useapi mode: the expiry it was read with, then the account to pin.
    Unique per session, so the JWT watch tells a renewed session from the one it replaced."""
    return f"{expires_at!r} {account_id}"


def pinned(token: str) -> str:
    return token.split(" ", 1)[1]


def dig(body: dict, path: tuple[str, ...]):
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    return body


class UseapiAdapter(Adapter):
    """One provider at useapi.net. Built per call by `Core.adapter` (cheap: no I/O)."""

    def __init__(self, client: httpx.Client, base_url: str, *, token: str, spec, dialect: UseapiDialect,
                 max_jobs: int | None = None):
        super().__init__(client, None)
        self.max_jobs = max_jobs  # useapi's per-request maxJobs: the admitting account's, on creates
        self.base = base_url.rstrip("/") + spec.api_prefix
        self.root = base_url.rstrip("/")
        self.token = token
        self.spec = spec
        self.dialect = dialect
        self.refresh_kind = dialect.refresh

    # -- accounts ---------------------------------------------------------------
    def login(self, credentials: dict) -> Session:
        """POST the account to useapi (which logs in upstream and validates it). `credentials`
        carries the user's body: credential fields and `maxJobs`. useapi's refusals come back
        with its status and message (401 wrong password, 400, 402 …)."""
        body = {k: v for k, v in credentials.items() if v is not None}
        account_id = body.get(self.spec.id_field)
        path = f"/accounts/{quote(str(account_id), safe='@')}" if self.dialect.account_path_id else "/accounts"
        answer = self._call("POST", path, account=True, json=body)
        return self.session_of(answer)

    def refresh(self, credentials: dict, session: Session) -> Session:
        """RELOGIN with stored secrets: re-POST them. Otherwise (useapi renews it itself, or the
        account was imported without its secrets) read the account: a session useapi did not
        renew in time raises `SessionNotRenewed` with the time it has left."""
        secrets = [f for f in self.spec.credential_fields if f != self.spec.id_field]
        if self.refresh_kind == RELOGIN and all(credentials.get(f) for f in secrets):
            return self.login(credentials)
        fresh = self.session_of(self.account(session.account_id))
        if fresh.expires_at <= session.expires_at:
            left = max(0, int(session.expires_at - time.time()))
            raise SessionNotRenewed(f"useapi has not renewed the session, which expires in {left} s "
                                    f"({iso_utc(session.expires_at)}); POST the account again", status=401)
        return fresh

    def account(self, account_id: str) -> dict:
        return self._call("GET", f"/accounts/{quote(account_id, safe='@')}")

    def accounts(self) -> dict:
        """Every account configured at useapi for this provider (`{}` when none)."""
        try:
            answer = self._call("GET", "/accounts")
        except UpstreamError as exc:
            if exc.status == 404:
                return {}
            raise
        return answer if isinstance(answer, dict) else {}

    def delete_account(self, account_id: str) -> None:
        self._call("DELETE", f"/accounts/{quote(account_id, safe='@')}", empty=True)

    def session_of(self, answer: dict) -> Session:
        account_id = str(answer.get(self.spec.id_field) or "")
        exp = next((v for v in (dig(answer, p) for p in EXPIRY_PATHS) if isinstance(v, (int, float))), None)
        if not account_id or exp is None:
            raise UpstreamError("useapi answered an account without its id or session expiry", status=502)
        iat = dig(answer, ISSUED_PATHS[0])
        if not isinstance(iat, (int, float)):
            lifetime = dig(answer, ("jwt", "expires_in"))
            iat = exp - lifetime if isinstance(lifetime, (int, float)) else time.time()
        shown = answer.get(self.dialect.session_key)
        extra = {k: answer[k] for k in ("supportVideo", "supportMusic") if k in answer}
        return Session(account_id=account_id, token=pin_token(account_id, float(exp)), expires_at=float(exp),
                       issued_at=float(iat), jwt=shown if isinstance(shown, dict) else {}, extra=extra)

    # -- jobs -------------------------------------------------------------------
    def create(self, token, operation, payload, idempotency_key):
        account = pinned(token)
        body = {**payload, **self.dialect.create_fields, self.spec.id_field: account, "replyRef": idempotency_key}
        if self.max_jobs is not None:
            body["maxJobs"] = self.max_jobs
        answer = self._call("POST", f"/{operation.strip('/')}", json=body)
        ident = answer.get(self.dialect.id_key)
        if not isinstance(ident, (str, int)) or ident == "":
            raise UpstreamError(f"useapi answered a create without {self.dialect.id_key}", status=502)
        return str(ident)

    def recover(self, token: str, idempotency_key: str) -> str | None:
        """The id of a job useapi runs for this generation (its `replyRef`), if any: after a
        create whose answer was lost, so the retry does not submit it twice."""
        running = self._call("GET", "/scheduler")
        items = running.get("executing", []) if isinstance(running, dict) else running
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and item.get("replyRef") == idempotency_key:
                found = item.get(self.dialect.id_key) or item.get("id")
                if found:
                    return str(found)
        return None

    def poll(self, token, upstream_id):
        path = self.dialect.status_path.format(id=quote(upstream_id, safe=":@"))
        return self.dialect.read(self._call("GET", path))

    def cancel(self, token, upstream_id):
        """useapi stops tracking the job (its slot frees); the upstream may still finish it."""
        try:
            self._call("DELETE", f"/scheduler/{quote(upstream_id, safe=':@')}", empty=True)
        except UpstreamError as exc:
            if exc.status != 404:  # 404: no longer running there
                raise

    def upload(self, token, data, name, content_type=OCTET_STREAM):
        if self.dialect.upload is None:
            raise UpstreamError(f"{self.spec.title} takes no uploads through useapi", status=400)
        path, param, answer_of = self.dialect.upload
        params = {param: pinned(token)}
        if name:
            params["name"] = name
        answer = self._call("POST", path, params=params, content=data, headers={"Content-Type": content_type})
        return answer_of(answer)

    # -- the wire ---------------------------------------------------------------
    def _call(self, method: str, path: str, *, account: bool = False, empty: bool = False, **kw):
        headers = {**kw.pop("headers", {}), "Authorization": f"Bearer {self.token}"}
        try:
            response = self.client.request(method, self.base + path, headers=headers, **kw)
        except httpx.TimeoutException:
            raise UpstreamError("useapi timed out", status=504) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"useapi unreachable: {type(exc).__name__}", status=502) from None
        if response.status_code >= 400:
            message = _message(response)
            if account and response.status_code in (400, 401, 402, 403):
                raise LoginFailed(message or "useapi refused the account", status=response.status_code)
            retry_after = response.headers.get("Retry-After")
            raise UpstreamError(message or f"useapi answered {response.status_code}", status=response.status_code,
                                retry_after=_seconds(retry_after))
        if empty or response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise UpstreamError("useapi answered a body that is not JSON", status=502) from None


def check_token(client: httpx.Client, base_url: str, token: str | None) -> None:
    """Refuse a missing or wrong useapi token with a clear error (start-up, `accounts import`).
    A useapi that cannot be reached is not refused here: calls back off like any upstream's."""
    from ..errors import ConfigurationError

    if not token:
        raise ConfigurationError("DISPATCHER_USEAPI_TOKEN is not set: the useapi upstream needs the team's "
                                 "useapi.net API token")
    try:
        response = client.get(base_url.rstrip("/") + "/v2/account", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise UpstreamError(f"useapi unreachable at {base_url}: {type(exc).__name__}", status=502) from None
    if response.status_code in (401, 403):
        raise ConfigurationError(f"useapi refused DISPATCHER_USEAPI_TOKEN ({response.status_code}): "
                                 "check the token at useapi.net")


def _message(response: httpx.Response) -> str:
    try:
        return str(json_error(response) or "")
    except Exception:  # a body we cannot read: say nothing of it
        return ""


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
