"""The JWT watch: a usable token for an account, refreshed ahead of expiry.

`ensure_token` is called before every upstream call. Inside the refresh margin
it refreshes, single-flight per account across all processes: one caller takes
a Redis lock and refreshes, the others wait for its result. A refresh that
fails takes the account out of rotation with useapi's error text; a token that
cannot be refreshed (MiniMax) flags the account before it expires.
"""

from __future__ import annotations

import time
import uuid

from . import keys, providers
from .errors import DispatcherError, LoginFailed, UpstreamError
from .health import refresh_failed_message
from .logging import get_logger

log = get_logger()
LOCK_TTL_MS = 30_000
WAIT_SECONDS = 35.0


class AccountUnusable(DispatcherError):
    """The account left rotation (flagged); the generation should go elsewhere."""

    status = 503


def ensure_token(d, provider: str, account_id: str, *, force: bool = False, stale_token: str | None = None) -> str:
    spec = providers.get(provider)
    account = d.accounts.get(spec, account_id)
    if account.error:
        raise AccountUnusable(f"Account {account_id} is flagged: {account.error}")
    session = account.session
    now = time.time()
    if session and not force and now < session.expires_at - d.refresh_margin(session):
        return session.token
    if session and force and stale_token and session.token != stale_token:
        return session.token  # someone already replaced the token that failed
    if spec.refresh == "none":
        if session and now < session.expires_at and not force:
            d.flag_account(provider, account_id, _expiring_message(session.expires_at))
        else:
            d.flag_account(provider, account_id, refresh_failed_message(now))
        raise AccountUnusable(f"Account {account_id} token cannot be refreshed")
    return _refresh_single_flight(d, spec, account_id, seen=session.token if session else None)


def _expiring_message(expires_at: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    return f"Token expires {stamp} and cannot be refreshed; POST the account with a new token"


def _refresh_single_flight(d, spec, account_id: str, *, seen: str | None) -> str:
    lock = keys.refresh_lock(spec.name, account_id)
    me = uuid.uuid4().hex
    if d.r.set(lock, me, nx=True, px=LOCK_TTL_MS):
        try:
            return _refresh(d, spec, account_id, seen=seen)
        finally:
            _unlock(d.r, lock, me)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        account = d.accounts.get(spec, account_id)
        if account.error:
            raise AccountUnusable(f"Account {account_id} is flagged: {account.error}")
        if account.session and account.session.token != seen:
            return account.session.token
        if not d.r.exists(lock):
            # the holder gave up without a new token: take the lock ourselves
            return _refresh_single_flight(d, spec, account_id, seen=seen)
    raise UpstreamError(f"token refresh for {account_id} is still running", status=503)


def _refresh(d, spec, account_id: str, *, seen: str | None) -> str:
    account = d.accounts.get(spec, account_id)
    session = account.session
    if session and session.token != seen and time.time() < session.expires_at - d.refresh_margin(session):
        return session.token  # refreshed by someone else meanwhile
    adapter = d.adapter(spec.name)
    try:
        fresh = adapter.refresh(account.credentials, session) if session else adapter.login(account.credentials)
    except LoginFailed as exc:
        d.flag_account(spec.name, account_id, refresh_failed_message())
        log.warning("token refresh refused", provider=spec.name, account=account_id, reason=exc.message)
        raise AccountUnusable(f"Account {account_id}: {exc.message}") from None
    except UpstreamError:
        raise  # transient: the caller retries with backoff
    d.accounts.save_session(spec.name, account_id, fresh)
    cap = d.capacity(spec.name)
    d.dispatch(cap.set_usable_until(account_id, d.usable_until_ms(spec, fresh)))
    d.r.hincrby(keys.account(spec.name, account_id), "refreshes", 1)
    log.info("token refreshed", provider=spec.name, account=account_id, expires_at=fresh.expires_at)
    return fresh.token


_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _unlock(r, key: str, me: str) -> None:
    r.eval(_UNLOCK, 1, key, me)


def watch(d, provider: str, *, horizon: float = 0.0) -> int:
    """Refresh every account of `provider` whose token enters its margin within `horizon` seconds.

    Run by the maintenance tick so that admission never waits on a login."""
    spec = providers.get(provider)
    refreshed = 0
    now = time.time()
    for account in d.accounts.all(spec):
        s = account.session
        if account.error or s is None:
            continue
        if now + horizon >= s.expires_at - d.refresh_margin(s):
            try:
                ensure_token(d, provider, account.id)
                refreshed += 1
            except (AccountUnusable, UpstreamError) as exc:
                log.warning("token watch could not refresh", provider=provider, account=account.id,
                            error=getattr(exc, "message", type(exc).__name__))
    return refreshed
