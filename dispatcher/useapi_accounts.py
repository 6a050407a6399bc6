"""Accounts a team configured at useapi.net: importing them, and keeping ours in step with them.

- `import_accounts`: mirror useapi's accounts (`GET …/accounts`) into the store with their maxJobs
  and their session expiry; one that useapi shows with an `error` is stored out of rotation. Their
  secrets stay at useapi (it shows them masked): such an account renews by re-reading useapi,
  never by re-posting (`UseapiAdapter.refresh`).
- `sync`: every `DISPATCHER_USEAPI_SYNC` seconds, one process reads each useapi provider's
  accounts: a later expiry (useapi renewed a session) is taken, an `error` useapi shows takes the
  account out of rotation here, and an account no longer configured there leaves rotation.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import keys, providers
from .errors import ConfigurationError, NotFound, UpstreamError
from .logging import get_logger
from .providers import Session
from .providers.useapi import UseapiAdapter, check_token

if TYPE_CHECKING:
    from .core import Core

log = get_logger()
ON_HOLD = 596


def useapi_providers(d: Core, provider: str | None = None) -> list:
    """The specs reached through useapi (`provider`: that one, which must be)."""
    if provider is not None:
        spec = providers.get(provider)
        if d.settings.upstream_kind(spec.name) != "useapi":
            raise ConfigurationError(f"{spec.title} is not reached through useapi: set DISPATCHER_UPSTREAM=useapi "
                                     f"or DISPATCHER_UPSTREAM_{spec.name.upper()}=useapi")
        return [spec]
    return [s for s in providers.all_specs() if d.settings.upstream_kind(s.name) == "useapi"]


def _adapter(d: Core, spec) -> UseapiAdapter:
    adapter = d.adapter(spec.name)
    assert isinstance(adapter, UseapiAdapter)
    return adapter


def import_accounts(d: Core, provider: str | None = None) -> dict:
    """Mirror useapi's accounts of `provider` (default: every useapi provider) into the store.
    Returns `{provider: {account_id: "imported" | "imported, out of rotation: <error>" | "skipped: …"}}`."""
    specs = useapi_providers(d, provider)
    if not specs:
        raise ConfigurationError("No provider is reached through useapi: set DISPATCHER_UPSTREAM=useapi "
                                 "(or DISPATCHER_UPSTREAM_<PROVIDER>=useapi)")
    check_token(d.http, d.settings.useapi_url, d.settings.useapi_token)
    report: dict[str, dict[str, str]] = {}
    for spec in specs:
        found = report.setdefault(spec.name, {})
        here = set(d.accounts.ids(spec.name))
        for account_id, body in sorted(_adapter(d, spec).accounts().items()):
            if str(account_id) in here:  # ours holds its credentials (a re-POST can renew it): kept as it is
                found[str(account_id)] = "kept: already configured here"
                continue
            found[str(account_id)] = _import_one(d, spec, str(account_id), body)
    return report


def _import_one(d: Core, spec, account_id: str, body) -> str:
    if not isinstance(body, dict):
        return "skipped: useapi answered no account object"
    low, high = spec.max_jobs
    raw = body.get("maxJobs")
    max_jobs = min(max(int(raw), low), high) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else low
    body = {spec.id_field: account_id, **body}
    error = body.get("error") if isinstance(body.get("error"), str) and body.get("error") else None
    try:
        session = _adapter(d, spec).session_of(body)
    except UpstreamError:
        if error is None:
            return "skipped: useapi shows no session expiry for it"
        now = time.time()  # an account in error at useapi may show no session at all
        session = Session(account_id=account_id, token=f"{now!r} {account_id}", expires_at=now, issued_at=now, jwt={})
    try:
        d.open_account(spec, {spec.id_field: account_id}, max_jobs, session)
    except UpstreamError as exc:  # an id we cannot use (checked like any login's)
        return f"skipped: {exc.message}"
    if error:
        d.flag_account(spec.name, account_id, f"useapi: {error}", code=ON_HOLD)
        return f"imported, out of rotation: {error}"
    return "imported"


def sync(d: Core, provider: str, *, force: bool = False) -> int:
    """Bring the store in step with useapi for one provider, at most every `useapi_sync` seconds
    across all processes (`force`: now). Returns the accounts it changed."""
    interval = d.settings.useapi_sync
    spec = providers.get(provider)
    if d.settings.upstream_kind(spec.name) != "useapi" or (interval <= 0 and not force):
        return 0
    if not force and not d.r.set(keys.useapi_sync(provider), "1", nx=True, px=int(interval * 1000)):
        return 0
    remote = _adapter(d, spec).accounts()
    changed = 0
    for plain in d.accounts.summaries(provider):
        body = remote.get(plain.id)
        if not isinstance(body, dict):
            if not plain.error:
                d.flag_account(provider, plain.id, "useapi: the account is no longer configured there", code=ON_HOLD)
                changed += 1
            continue
        error = body.get("error")
        if isinstance(error, str) and error and not plain.error:
            d.flag_account(provider, plain.id, f"useapi: {error}", code=ON_HOLD)
            changed += 1
            continue
        changed += _take_expiry(d, spec, plain, body)
    return changed


def _take_expiry(d: Core, spec, plain, body: dict) -> int:
    """A session useapi renewed on its own (later expiry than ours): store it."""
    try:
        fresh = _adapter(d, spec).session_of({spec.id_field: plain.id, **body})
    except UpstreamError:
        return 0
    if plain.expires_at is not None and fresh.expires_at <= plain.expires_at:
        return 0
    try:
        if not d.accounts.save_session(spec.name, plain.id, fresh):
            return 0
    except NotFound:
        return 0
    d.dispatch(d.capacity(spec.name).set_usable_until(plain.id, d.usable_until_ms(spec, fresh)))
    log.info("session renewed at useapi", provider=spec.name, account=plain.id, expires_at=fresh.expires_at)
    return 1


def check_settings(settings, client=None) -> None:
    """At start-up: with a provider reached through useapi, a missing or refused
    `DISPATCHER_USEAPI_TOKEN` stops the process with a clear error. A useapi that cannot be
    reached does not: calls back off like any upstream's, and the token is checked again then."""
    if not settings.uses_useapi():
        return
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=min(settings.upstream_timeout, 10.0))
    try:
        check_token(client, settings.useapi_url, settings.useapi_token)
    except UpstreamError as exc:
        log.warning("useapi not reachable at start-up", error=exc.message)
    finally:
        if own:
            client.close()
