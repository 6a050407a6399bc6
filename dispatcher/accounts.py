"""The account store: one Redis hash per account, secrets sealed by the vault.

Only `creds` and `session` are sealed; the rest of a record is plain (`PLAIN_FIELDS`):
maxJobs, the error flag and its hold, and the session's clock (`expires_at`,
`issued_at`). Whatever looks at many accounts (maintenance, the JWT watch, the
scheduler views, a create that may find every account out of rotation) reads
`summaries()`: those plain fields of every account in one pipelined round trip,
decrypting nothing. Only the account about to be used is decrypted (`get`).

Validation of posted bodies and the rendering of the useapi-shaped (masked)
view live here too, so the HTTP API, the CLI and Python callers agree.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

from . import keys, lua
from .errors import NotFound, UpstreamError, ValidationError
from .providers import ProviderSpec, Session
from .providers.adapter import iso_utc
from .providers.ids import header_safe, id_problem
from .secrets import Vault

# the unsealed fields `summaries` reads, in this order
PLAIN_FIELDS = ("id", "maxJobs", "error", "error_until", "error_at", "expires_at", "issued_at", "error_code")
OUT_OF_CREDITS, ON_HOLD = 412, 596  # useapi's codes for an account out of rotation (`error_code`)


@dataclass(frozen=True)
class Account:
    provider: str
    id: str
    max_jobs: int
    credentials: dict
    session: Session | None
    error: str | None
    extra: dict
    updated: float
    refreshed_at: float | None
    error_until: float | None = None
    error_at: float | None = None
    error_code: int | None = None  # with `error`: useapi's code for it (412 out of credits, else 596)


@dataclass(frozen=True)
class Summary:
    """An account's plain fields: enough for rotation, holds, the JWT watch's clock and the
    views. No credential, no token: reading it decrypts nothing."""

    provider: str
    id: str
    max_jobs: int
    error: str | None
    error_until: float | None
    error_at: float | None
    expires_at: float | None  # of its session (None: no session)
    issued_at: float | None
    error_code: int | None = None  # with `error`: useapi's code for it


def _float(raw) -> float | None:
    return float(raw) if raw not in (None, "") else None


def _error_code(error: str | None, raw) -> int | None:
    """The flag's code as stored; a flag written before codes were stored (its text then named
    412 as "(412)") is read as its text said, once per read."""
    if not error:
        return None
    if raw not in (None, ""):
        return int(raw)
    return OUT_OF_CREDITS if "(412)" in error else ON_HOLD


def _summary(provider: str, row) -> Summary:
    account_id, max_jobs, error, until, at, expires, issued, code = row
    return Summary(provider=provider, id=account_id, max_jobs=int(max_jobs or 0), error=error or None,
                   error_until=_float(until), error_at=_float(at), expires_at=_float(expires),
                   issued_at=_float(issued), error_code=_error_code(error, code))


def not_found_message(spec: ProviderSpec) -> str:
    suffix = "" if spec.id_from_login else f"/{spec.id_field}"
    return f"Configuration not found. To create configuration use POST {spec.api_prefix}/accounts{suffix}."


def validate_body(spec: ProviderSpec, body: dict, path_id: str | None) -> tuple[dict, int]:
    """Check a posted account body; return (credentials, maxJobs) or raise ValidationError."""
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object")
    creds: dict = {}
    for name in spec.credential_fields:
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"Parameter {name} is required")
        if len(value) > 16384:
            raise ValidationError(f"Parameter {name} is too long")
        if name in spec.header_fields and not header_safe(value):  # never echoed: it is a secret
            raise ValidationError(f"Parameter {name} holds characters that cannot be sent in an HTTP header "
                                  "(a line break, another control character or a non-ASCII character)")
        creds[name] = value.strip() if name == spec.id_field else value
    if path_id is not None and spec.id_field in creds and creds[spec.id_field] != path_id:
        raise ValidationError(
            f"{spec.id_field} value specified in the request body ({creds[spec.id_field]}) must match "
            f"the {spec.id_field} value specified in the URL path ({path_id})"
        )
    if spec.id_field in creds:
        check_id(spec, creds[spec.id_field])
    low, high = spec.max_jobs
    raw = body.get("maxJobs")
    if raw is None or raw == "":
        raise ValidationError("Parameter maxJobs is required")
    try:
        max_jobs = int(raw) if not isinstance(raw, bool) and float(raw) == int(float(raw)) else None
    except (TypeError, ValueError, OverflowError):
        max_jobs = None
    if max_jobs is None or not low <= max_jobs <= high:
        raise ValidationError(f"Parameter maxJobs must be an integer between {low} and {high}, got {raw!r}")
    return creds, max_jobs


def validate_pace(body: dict) -> tuple[int | None, int | None]:
    """`maxPerMinute` and `maxPerDay` of an account body: optional whole numbers >= 1 (None: no limit)."""
    out = []
    for name in ("maxPerMinute", "maxPerDay"):
        raw = body.get(name)
        if raw is None or raw == "":
            out.append(None)
            continue
        try:
            value = int(raw) if not isinstance(raw, bool) and float(raw) == int(float(raw)) else None
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or value < 1:
            raise ValidationError(f"Parameter {name} must be a whole number of at least 1, got {raw!r}")
        out.append(value)
    return out[0], out[1]


def check_id(spec: ProviderSpec, account_id: str, *, from_upstream: bool = False) -> None:
    """Refuse an id that could not be reached at `{prefix}/accounts/{id}` (`/`, `..`, `?`, `%`,
    spaces, control characters…): 400, or 502 when the upstream's login answered it."""
    problem = id_problem(spec, account_id)
    if problem is None:
        return
    if from_upstream:
        raise UpstreamError(f"The upstream login answered an account id that cannot be used: {problem}", status=502)
    raise ValidationError(f"Parameter {problem}; got {account_id[:80]!r}")


class AccountStore:
    def __init__(self, client, vault: Vault):
        self.r = client
        self.vault = vault
        self._update_existing = lua.register(client, "update_existing")

    # -- writes ---------------------------------------------------------------
    def save(self, spec: ProviderSpec, credentials: dict, max_jobs: int, session: Session) -> str:
        """Create or replace an account after a successful login; clears its error."""
        account_id = session.account_id if spec.id_from_login else credentials[spec.id_field]
        check_id(spec, account_id, from_upstream=spec.id_from_login)  # before anything is written
        now = time.time()
        key = keys.account(spec.name, account_id)
        created = self.r.hget(key, "created") or now
        fields = {
            "id": account_id,
            "maxJobs": max_jobs,
            "created": created,
            "updated": now,
            "refreshed_at": now,
            "error": "",
            "error_until": "",
            "error_at": "",
            "error_code": "",
            "creds": self.vault.seal(credentials),
            "session": self.vault.seal(_session_dict(session)),
            "expires_at": session.expires_at,
            "issued_at": session.issued_at,
            "extra": json.dumps(session.extra),
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.sadd(keys.accounts(spec.name), account_id)
        pipe.sadd(keys.providers_seen(), spec.name)
        pipe.execute()
        return account_id

    def _update(self, provider: str, account_id: str, values: dict, incr: str = "") -> bool:
        """Write fields only while the account exists (a late refresh never resurrects a deleted one)."""
        flat: list = []
        for k, v in values.items():
            flat += [k, "" if v is None else v]
        return bool(self._update_existing(keys=[keys.account(provider, account_id)], args=[incr, *flat]))

    def save_session(self, provider: str, account_id: str, session: Session) -> bool:
        return self._update(provider, account_id, {
            "session": self.vault.seal(_session_dict(session)),
            "expires_at": session.expires_at,
            "issued_at": session.issued_at,
            "refreshed_at": time.time(),
        }, incr="refreshes")

    def flag(self, provider: str, account_id: str, error: str, *, until: float | None = None,
             code: int = ON_HOLD) -> bool:
        return self._update(provider, account_id, {"error": error, "error_at": time.time(), "error_until": until,
                                                   "error_code": code})

    def unflag(self, provider: str, account_id: str) -> bool:
        return self._update(provider, account_id, {"error": "", "error_until": "", "error_at": "", "error_code": ""})

    def delete(self, spec: ProviderSpec, account_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.account(spec.name, account_id))
        pipe.srem(keys.accounts(spec.name), account_id)
        pipe.execute()

    # -- reads ----------------------------------------------------------------
    def ids(self, provider: str) -> list[str]:
        return sorted(self.r.smembers(keys.accounts(provider)))

    def exists(self, provider: str, account_id: str) -> bool:
        return bool(self.r.exists(keys.account(provider, account_id)))

    def get(self, spec: ProviderSpec, account_id: str) -> Account:
        raw = self.r.hgetall(keys.account(spec.name, account_id))
        if not raw:
            raise NotFound(not_found_message(spec))
        return self._load(spec.name, raw)

    def session(self, spec: ProviderSpec, account_id: str) -> Session | None:
        """The account's session alone (one sealed value opened, not its credentials)."""
        found, sealed = self.r.hmget(keys.account(spec.name, account_id), "id", "session")
        if found is None:
            raise NotFound(not_found_message(spec))
        s = self.vault.open(sealed)
        return Session(**s) if s else None

    def summary(self, provider: str, account_id: str) -> Summary | None:
        """One account's plain fields (None when it does not exist); decrypts nothing."""
        row = self.r.hmget(keys.account(provider, account_id), *PLAIN_FIELDS)
        return None if row[0] is None else self._backfilled(provider, [_summary(provider, row)])[0]

    def summaries(self, provider: str) -> list[Summary]:
        """Every account's plain fields, sorted by id: two round trips (the ids, then one HMGET
        per account, pipelined), nothing decrypted."""
        ids = self.ids(provider)
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hmget(keys.account(provider, account_id), *PLAIN_FIELDS)
        found = [_summary(provider, row) for row in pipe.execute() if row[0] is not None]
        return self._backfilled(provider, found)

    def _backfilled(self, provider: str, found: list[Summary]) -> list[Summary]:
        """Records written before `issued_at` was stored plain: read it from the sealed session,
        once, and store it, so the next read decrypts nothing."""
        old = [s for s in found if s.expires_at is not None and s.issued_at is None]
        if not old:
            return found
        pipe = self.r.pipeline(transaction=False)
        for s in old:
            pipe.hget(keys.account(provider, s.id), "session")
        fixed = {}
        for s, sealed in zip(old, pipe.execute()):
            issued = float(self.vault.open(sealed).get("issued_at") or 0.0)
            self._update(provider, s.id, {"issued_at": issued})
            fixed[s.id] = replace(s, issued_at=issued)
        return [fixed.get(s.id, s) for s in found]

    def decode(self, provider: str, raw: dict) -> Account | None:
        """An account from its raw record as read by someone else (None when empty)."""
        return self._load(provider, raw) if raw else None

    def all(self, spec: ProviderSpec) -> list[Account]:
        ids = self.ids(spec.name)
        pipe = self.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hgetall(keys.account(spec.name, account_id))
        return [self._load(spec.name, raw) for raw in pipe.execute() if raw]

    def _load(self, provider: str, raw: dict) -> Account:
        s = self.vault.open(raw.get("session"))
        session = Session(**s) if s else None
        return Account(
            provider=provider, id=raw["id"], max_jobs=int(raw["maxJobs"]),
            credentials=self.vault.open(raw.get("creds")), session=session,
            error=raw.get("error") or None, extra=json.loads(raw.get("extra") or "{}"),
            updated=float(raw.get("updated") or 0),
            refreshed_at=float(raw["refreshed_at"]) if raw.get("refreshed_at") else None,
            error_until=float(raw["error_until"]) if raw.get("error_until") else None,
            error_at=float(raw["error_at"]) if raw.get("error_at") else None,
            error_code=_error_code(raw.get("error"), raw.get("error_code")),
        )


def _session_dict(session: Session) -> dict:
    return {
        "account_id": session.account_id, "token": session.token, "expires_at": session.expires_at,
        "issued_at": session.issued_at, "jwt": session.jwt, "refresh_token": session.refresh_token,
        "extra": session.extra,
    }


def render(spec: ProviderSpec, account: Account, *, cooldown_until: float | None = None,
           pace: dict | None = None, quarantines: dict | None = None) -> dict:
    """The useapi-shaped account object with every secret masked. `pace`: its pacing windows
    (`Capacity.pace`), shown with their counts and when a full one admits again."""
    view: dict = {spec.id_field: account.id}
    view.update({k: v for k, v in spec.render_credentials(account.credentials).items() if k != spec.id_field})
    view["maxJobs"] = account.max_jobs
    if pace and (pace["minute"]["limit"] or pace["day"]["limit"]):
        for name, window in (("maxPerMinute", pace["minute"]), ("maxPerDay", pace["day"])):
            if window["limit"]:
                view[name] = window["limit"]
        view["pacing"] = {name: {"limit": w["limit"], "count": w["count"],
                                 "freesAtUTC": iso_utc(w["frees_at_ms"] / 1000) if w["frees_at_ms"] else None}
                          for name, w in pace.items() if w["limit"]}
    if quarantines:  # out of rotation for these operations only, until then
        view["quarantined"] = {op: iso_utc(until / 1000) for op, until in sorted(quarantines.items())}
    if account.session:
        view[spec.session_key] = spec.render_jwt(account.session.jwt)
        view["tokenExpires"] = account.session.expires_at
        view["tokenExpiresUTC"] = iso_utc(account.session.expires_at)
    view.update(account.extra)
    if account.refreshed_at:
        view["lastRefreshed"] = account.refreshed_at
        view["lastRefreshedUTC"] = iso_utc(account.refreshed_at)
    if cooldown_until and cooldown_until > time.time():
        view["cooldownUntil"] = cooldown_until
        view["cooldownUntilUTC"] = iso_utc(cooldown_until)
    if account.error:
        view["error"] = account.error
        if account.error_at:
            view["errorUTC"] = iso_utc(account.error_at)
        if account.error_until:  # a temporary flag (596 hold): back in rotation at this time
            view["errorUntil"] = account.error_until
            view["errorUntilUTC"] = iso_utc(account.error_until)
    return view
