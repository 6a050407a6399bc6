"""The JWT watch: a usable token for an account, refreshed ahead of expiry.

`ensure_token` is called before every upstream call. Inside the refresh margin
it refreshes, single-flight per account across all processes: one caller takes
a Redis lock and refreshes, the others wait for its result. A refresh that
fails takes the account out of rotation with useapi's error text; a token that
cannot be refreshed (MiniMax) flags the account before it expires.

The margin (`refresh_margin`) is the larger of
- the configured rule: `refresh_margin_ratio` of the token's lifetime, at most
  `refresh_margin` seconds (default 10 % or 5 minutes, whichever is smaller), and
- the transit guard: `refresh_margin_floor` seconds (default 1 s), at most half the
  lifetime. A token is checked just before a request is sent, and the request
  reaches the upstream a moment later: one HTTP round trip, normally
  milliseconds, but a loaded host can stall a process for hundreds of them. The
  10 % rule alone gives a 3-second token 0.3 s, which such a stall can eat; one
  second covers it with room to spare, and capping it at half the lifetime keeps
  very short tokens usable. Real tokens (hours, days) never notice the floor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import time
import uuid

from . import keys, metrics, providers
from .errors import DispatcherError, LoginFailed, NotFound, UpstreamError
from .health import refresh_failed_message
from .logging import get_logger
from .providers.useapi import SessionNotRenewed

if TYPE_CHECKING:
    from dispatcher.core import Core

log = get_logger()
LOCK_TTL_MS = 30_000
WAIT_SECONDS = 35.0


class AccountUnusable(DispatcherError):
    """The account left rotation (flagged); the generation should go elsewhere."""

    status = 503


# -- the margin: pure functions of the settings and the session -------------------------


# `session`: a Session, or an account's plain Summary (the same `expires_at` and `issued_at`)
def lifetime(session) -> float:
    return max(session.expires_at - session.issued_at, 0.0)


def transit_guard(settings, session) -> float:
    """Seconds a token must still be valid when a request leaves, to be valid when it arrives."""
    floor = settings.refresh_margin_floor
    return max(min(floor, lifetime(session) / 2), 0.0)


def refresh_margin(settings, session) -> float:
    """Refresh (or, when impossible, stop using) a token this many seconds before it expires."""
    rule = min(settings.refresh_margin, settings.refresh_margin_ratio * lifetime(session))
    return max(rule, transit_guard(settings, session))


def expiring_message(expires_at: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    return f"Token expires {stamp} and cannot be refreshed; POST the account with a new token"


# -- ensure_token ---------------------------------------------------------------------


def ensure_token(d: Core, provider: str, account_id: str, *, force: bool = False, stale_token: str | None = None,
                 flagged_ok: bool = False, account=None) -> str:
    """A token for `account_id` that stays valid until the request reaches the upstream.

    - outside the margin: the stored token, no I/O beyond one Redis read;
    - inside it (or `force`, after an upstream 401 on `stale_token`): a
      single-flight refresh, or, for a provider that cannot refresh, the
      account is flagged and `AccountUnusable` raised;
    - a flagged account raises `AccountUnusable`, unless `flagged_ok` (a poll of
      a generation the upstream already accepted): then its token is used for
      as long as it works, and renewed where the provider allows it.
    Raises `UpstreamError` when a refresh failed transiently (retry later).

    `account`: the account as read a moment ago in a round trip of the caller's
    (a step reads it with the generation), instead of reading it here."""
    spec = providers.get(provider)
    if account is None or account.id != account_id:
        account = d.accounts.get(spec, account_id)
    if account.error and not flagged_ok:
        raise AccountUnusable(f"Account {account_id} is flagged: {account.error}")
    session = account.session
    now = time.time()
    if session and not force:
        # out of rotation the account takes no new work: its token serves polls to the last safe moment
        guard = transit_guard(d.settings, session) if account.error else d.refresh_margin(session)
        if now < session.expires_at - guard:
            return session.token
    if session and force and stale_token and session.token != stale_token:
        return session.token  # someone already replaced the token that failed
    if d.refresh_kind(spec) == "none":
        if account.error:
            raise AccountUnusable(f"Account {account_id} is flagged ({account.error}) and its token has expired")
        if session and now < session.expires_at and not force:
            d.flag_account(provider, account_id, expiring_message(session.expires_at))
        else:
            d.flag_account(provider, account_id, refresh_failed_message(now))
        raise AccountUnusable(f"Account {account_id} token cannot be refreshed")
    return _refresh_single_flight(d, spec, account_id, seen=session.token if session else None,
                                  flagged_ok=flagged_ok)


def _refresh_single_flight(d: Core, spec, account_id: str, *, seen: str | None, flagged_ok: bool = False,
                           wait: bool = True) -> str | None:
    """Refresh under the account's lock; without the lock wait for the holder's result
    (or, with wait=False, return None at once: someone is already refreshing)."""
    lock = keys.refresh_lock(spec.name, account_id)
    me = uuid.uuid4().hex
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        if d.r.set(lock, me, nx=True, px=LOCK_TTL_MS):
            try:
                return _refresh(d, spec, account_id, seen=seen)
            finally:
                _unlock(d.r, lock, me)
        if not wait:
            return None
        while d.r.exists(lock):
            if time.monotonic() >= deadline:
                raise UpstreamError(f"token refresh for {account_id} is still running", status=503)
            time.sleep(0.02)
            account = d.accounts.get(spec, account_id)
            if account.error and not flagged_ok:
                raise AccountUnusable(f"Account {account_id} is flagged: {account.error}")
            if account.session and account.session.token != seen:
                return account.session.token
        # the lock is gone: the holder finished (its token is read under our own lock) or gave up


def _refresh(d: Core, spec, account_id: str, *, seen: str | None) -> str:
    account = d.accounts.get(spec, account_id)
    session = account.session
    if session and session.token != seen and time.time() < session.expires_at - d.refresh_margin(session):
        return session.token  # refreshed by someone else meanwhile
    adapter = d.adapter(spec.name)
    try:
        fresh = _renew(adapter, d.refresh_kind(spec), {**account.credentials, "maxJobs": account.max_jobs}, session)
    except LoginFailed as exc:
        metrics.refresh_failed(d, spec.name, account_id, "refused")
        # a session useapi did not renew: say how long it has left; otherwise useapi's wording
        reason = exc.message if isinstance(exc, SessionNotRenewed) else refresh_failed_message()
        d.flag_account(spec.name, account_id, reason)
        log.warning("token refresh refused", provider=spec.name, account=account_id, reason=exc.message)
        raise AccountUnusable(f"Account {account_id}: {exc.message}") from None
    except UpstreamError:
        metrics.refresh_failed(d, spec.name, account_id, "upstream")
        raise  # transient: the caller retries with backoff
    if not d.accounts.save_session(spec.name, account_id, fresh):
        raise AccountUnusable(f"Account {account_id} was deleted")
    cap = d.capacity(spec.name)
    d.dispatch(cap.set_usable_until(account_id, d.usable_until_ms(spec, fresh)))
    log.info("token refreshed", provider=spec.name, account=account_id, expires_at=fresh.expires_at)
    return fresh.token


def _renew(adapter, kind: str, credentials: dict, session):
    """Refresh the session; a refused refresh token falls back to a full login once
    (a rotated refresh token whose answer was lost must not cost the account).
    `credentials`: the account's, with its `maxJobs` (useapi's account POST takes it)."""
    if session is None:
        return adapter.login(credentials)
    try:
        return adapter.refresh(credentials, session)
    except LoginFailed:
        if kind != "refresh_token":
            raise
        log.info("refresh token refused; logging in again", account=session.account_id)
        return adapter.login(credentials)


_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _unlock(r, key: str, me: str) -> None:
    r.eval(_UNLOCK, 1, key, me)


# -- the periodic watch ---------------------------------------------------------------


def watch(d: Core, provider: str, *, horizon: float = 0.0) -> int:
    """Refresh every account of `provider` whose token enters its margin within `horizon` seconds,
    and flag those that cannot be refreshed once they are inside it. Returns the refreshes made.

    Run by the maintenance tick so that admission never waits on a login. It never
    waits on a refresh another process is already making. Which accounts are due is
    decided from their plain fields (`AccountStore.summaries`): only a due account's
    session is decrypted, so an idle tick over thousands of accounts decrypts nothing."""
    spec = providers.get(provider)
    refreshed = 0
    now = time.time()
    for plain in d.accounts.summaries(provider):
        if plain.error or plain.expires_at is None or plain.issued_at is None:
            continue
        if now + horizon < plain.expires_at - refresh_margin(d.settings, plain):
            continue
        try:
            account = d.accounts.get(spec, plain.id)  # due: this account's secrets, and only its
            refreshed += _watch_one(d, spec, account, now, horizon)
        except NotFound:
            continue  # deleted meanwhile
        except (AccountUnusable, UpstreamError) as exc:
            log.warning("token watch could not refresh", provider=provider, account=plain.id,
                        error=getattr(exc, "message", type(exc).__name__))
    return refreshed


def _watch_one(d: Core, spec, account, now: float, horizon: float) -> int:
    """The watch's decision for one due account, on its decrypted session (which may have been
    refreshed since the plain fields were read). Returns 1 when it refreshed the token."""
    s = account.session
    if account.error or s is None:
        return 0
    margin = d.refresh_margin(s)
    if now + horizon < s.expires_at - margin:
        return 0
    if d.refresh_kind(spec) == "none":
        if now >= s.expires_at - margin:
            ensure_token(d, spec.name, account.id, account=account)  # flags it: before expiry, with the reason
        return 0
    return 1 if _refresh_single_flight(d, spec, account.id, seen=s.token, wait=False) is not None else 0
