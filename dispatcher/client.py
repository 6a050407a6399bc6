"""`Dispatcher`: the supported Python surface — submit, get, cancel, accounts, views.

It drives a `Core` (core.py: connections, stores, and the operations workers and maintenance
share), reachable as `.core` for the HTTP layer and operations code; `.core` is not part of the
supported surface. Data flows one way: API → Dispatcher → Core → Redis ← workers.
Every time it answers is in seconds (epoch seconds for instants).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx
from rq import Callback, Queue
from rq.job import Dependency, Job

from . import backend_events, keys, providers, removal, useapi_accounts
from .accounts import not_found_message, render, validate_body, validate_pace
from .capacity import DEFAULT_PRIORITY, check_priority, check_tenant
from .connection import url_for, wait_for
from .errors import DispatcherError, NoCapacity, NotFound, StoreUnavailable, UpstreamError, ValidationError
from .generations import (ADMITTED, CANCELED, FAILED, LIVE, SUBMITTED, WAITING, Generation,
                          new_id, validate_reply)
from .logging import get_logger
from .payloads import MAX_PAYLOAD_BYTES, upstream_json, utf8
from .settings import Settings
from .core import Core
from .tokens import ensure_token

log = get_logger()


class Dispatcher:
    """Submit generations, manage accounts and read capacity on one Redis (see README "Python").
    Usable as a context manager: `with Dispatcher.from_url() as d: …` closes it."""

    def __init__(self, redis_url: str, settings: Settings | None = None, *, http: httpx.Client | None = None):
        self.core = Core(redis_url, settings, http=http)

    @property
    def settings(self) -> Settings:
        return self.core.settings

    @classmethod
    def from_url(cls, redis_url: str | None = None, settings: Settings | None = None, *,
                 http: httpx.Client | None = None) -> "Dispatcher":
        """`redis_url`, else `DISPATCHER_REDIS_URL`, else the embedded Redis; `settings`, else the environment."""
        settings = settings or Settings.from_env()
        return cls(redis_url or url_for(settings), settings, http=http)

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> "Dispatcher":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def upsert_account(self, provider: str, body: dict[str, Any], path_id: str | None = None) -> dict[str, Any]:
        """Log in upstream, then store the account (create or replace) and open its slots."""
        spec = providers.get(provider)
        credentials, max_jobs = validate_body(spec, body, path_id)
        pace = validate_pace(body)  # before the login: bad input changes nothing
        try:
            # raises LoginFailed: nothing stored. maxJobs rides along: useapi's account POST takes it
            session = self.core.adapter(provider).login({**credentials, "maxJobs": max_jobs})
        except UnicodeEncodeError:  # a credential sent in an HTTP header (token, cookie) must be ASCII
            raise ValidationError("A credential holds characters that cannot be sent upstream (not ASCII)") from None
        account_id = self.core.open_account(spec, credentials, max_jobs, session, pace)
        log.info("account saved", provider=provider, account=account_id, max_jobs=max_jobs)
        return self.account_view(provider, account_id)

    def account_view(self, provider: str, account_id: str) -> dict[str, Any]:
        """One account as the API shows it (secrets masked)."""
        spec = providers.get(provider)
        account = self.core.accounts.get(spec, account_id)
        cap = self.core.capacity(provider)
        return render(spec, account, cooldown_until=self._cooldown(provider, account_id),
                      pace=cap.pace(account_id), quarantines=cap.quarantines().get(account_id))

    def list_accounts(self, provider: str) -> dict[str, dict[str, Any]]:
        """Every account of a provider as the API shows them, by id (secrets masked)."""
        spec = providers.get(provider)
        found = self.core.accounts.all(spec)  # the listing shows every account's masked token: all opened
        if not found:
            raise NotFound(not_found_message(spec))
        table = self.core.r.hgetall(keys.cooldown(provider))  # one read, not one per account
        cap = self.core.capacity(provider)
        paces, quar = cap.paces(), cap.quarantines()  # the paced and quarantined accounts: a few round trips
        return {a.id: render(spec, a, cooldown_until=self._cooldown(provider, a.id, table), pace=paces.get(a.id),
                             quarantines=quar.get(a.id)) for a in found}

    def _cooldown(self, provider: str, account_id: str, table: dict | None = None) -> float | None:
        """Until when the account cools down (None: it does not); `table`: the cooldown hash, read already."""
        ms = table.get(account_id) if table is not None else self.core.r.hget(keys.cooldown(provider), account_id)
        return int(ms) / 1000 if ms else None

    def delete_account(self, provider: str, account_id: str, *, remote: bool = False) -> None:
        """Remove the account here (its running generations end first). `remote`: also at
        useapi.net, for a provider reached through it (400 otherwise; nothing changed)."""
        spec = providers.get(provider)
        self.core.accounts.get(spec, account_id)  # 404 when unknown
        if remote:
            if self.settings.upstream_kind(spec.name) != "useapi":
                raise ValidationError(f"remote=true deletes the account at useapi.net, but {spec.title} is not "
                                      "reached through useapi")
            self.core.adapter(provider).delete_account(account_id)  # useapi first: its refusal changes nothing
        failed, admitted = self.core.capacity(provider).remove_account(account_id)  # out of rotation first
        removal.end_running(self.core, provider, account_id)  # none of its generations is left stranded
        self.core.accounts.delete(spec, account_id)
        for gen in self.core.generations.many(failed) if failed else ():
            if gen is None:
                continue
            self.core.generations.move(gen.id, {WAITING}, FAILED, error=removal.deleted_message(account_id),
                                  error_code=404)
            self.core._unpark(provider, gen.parked)
            self.core.finished(gen.id)
        self.core.dispatch(admitted)
        log.info("account deleted", provider=provider, account=account_id)

    def import_useapi_accounts(self, provider: str | None = None) -> dict[str, Any]:
        """Mirror the accounts configured at useapi.net (see `dispatcher.useapi_accounts`)."""
        return useapi_accounts.import_accounts(self.core, provider)

    def submit(self, provider: str, operation: str, payload: dict | None = None, *, account: str | None = None,
               reply_url: str | None = None, reply_ref: str | None = None, wait: bool = True,
               priority: int = DEFAULT_PRIORITY, tenant: str | None = None,
               extra: dict | None = None, on_success: Callback | None = None, on_failure: Callback | None = None,
               callback_queue: str | Queue = "default", reply_queue: dict | str | None = None,
               rq: bool = False) -> "Handle":
        """`priority`: 0 (lowest) to 9 (highest), 5 by default: higher is admitted first, and a
        waiting generation gains a level every `DISPATCHER_PRIORITY_AGING` seconds. `tenant`: whose
        work it is; at equal priority tenants take turns (`DISPATCHER_TENANT_WEIGHTS`), and a
        tenant may be capped (`DISPATCHER_TENANT_CAPS`).
        `extra` is kept on the record: `shape` (render as that provider's status object, see
        `dispatcher.shapes`) and `fail_fast` (fail rather than wait when no account it may use is in rotation).
        RQ (README "RQ-native backends"): `on_success`/`on_failure` run on `callback_queue`; `reply_queue`
        gets the end as an RQ job; `rq=True` writes its RQ job now (else `Handle.rq_dependency` does)."""
        spec = providers.get(provider)
        payload = self._check_submission(spec, operation, payload, account, reply_url, reply_ref)
        check_priority(priority)
        check_tenant(tenant)
        hooks = self._check_hooks(extra, on_success, on_failure, callback_queue, reply_queue)
        gen = Generation(id=new_id(provider), provider=provider, operation=operation, payload=payload,
                         state=WAITING, created=time.time(), pinned=account, reply_url=reply_url, reply_ref=reply_ref,
                         priority=priority, tenant=tenant, extra={**(extra or {}), **({"rq": 1} if hooks or rq else {})})
        cap = self.core.capacity(provider)
        # one round trip, all or nothing (MULTI): the record, then the admission, which first
        # checks that the account (or any account) exists and otherwise changes nothing. A
        # connection lost before EXEC leaves no record without its line entry; the record is
        # written first, so a start step never finds a slot without one.
        # Its start job is written too, parked: the admission (now or when it reaches the
        # head of its line) enqueues it atomically.
        required = keys.account(provider, account) if account is not None else keys.accounts(provider)
        s = self.core.settings  # DISPATCHER_REDIS_WAIT_REPLICAS: WAIT after EXEC (docs/scaling.md)
        pipe = wait_for(self.core.r.pipeline(transaction=True), s.redis_wait_replicas, s.redis_wait_ms)
        gen.parked = self.core.steps.park_in(pipe, provider, gen.id)
        if gen.extra.get("rq"):  # its RQ job, deferred until it ends (dispatcher.backend_events)
            backend_events.gate_in(pipe, self.core, gen, hooks)
        created = self.core.generations.create_in(pipe, gen)
        acquired = cap.acquire_in(pipe, gen.id, account=account, known=account is not None, wait=wait,
                                  require=required, priority=priority, tenant=tenant, operation=operation)
        *_, record, reply = pipe.execute(raise_on_error=False)
        try:
            created(record)
            result = acquired(reply)
        except Exception as exc:
            # refused, missing account or failed: the generation never entered a line, so
            # nothing can have admitted it, and nothing of this submission stays
            self.core._discard(gen)
            if isinstance(exc, NoCapacity):
                self.core.dispatch(getattr(exc, "admitted", ()))  # waiters the pump admitted before refusing
                if exc.accounts:  # busy (not a full line): when could some account take it?
                    exc.retry_after = self.core.retry_after(provider, operation)
                    exc.headers["Retry-After"] = str(exc.retry_after)
            if isinstance(exc, NotFound):
                raise self._unknown_account(spec, account) from None
            raise
        self.core.dispatch(result.admitted)
        if pipe.confirmed is False:
            self._unconfirmed(gen)
        log.info("generation submitted", generation_id=gen.id, provider=provider, status=result.status,
                 account=result.account)
        return Handle(self, gen.id)

    def _unconfirmed(self, gen: Generation) -> None:
        """No replica acknowledged the submission in DISPATCHER_REDIS_WAIT_MS: it is not acknowledged
        either (503), and is canceled, best effort, so that a retry does not run it twice."""
        try:
            self.cancel(gen.id)
        except Exception as exc:  # the primary is going away, most likely: the 503 says it all
            log.warning("could not cancel an unconfirmed submission", generation_id=gen.id, error=type(exc).__name__)
        log.warning("submission not confirmed by a replica; canceled", generation_id=gen.id,
                    replicas=self.core.settings.redis_wait_replicas, wait_ms=self.core.settings.redis_wait_ms)
        raise StoreUnavailable(f"Redis: no replica acknowledged the submission within "
                               f"{self.core.settings.redis_wait_ms} ms (DISPATCHER_REDIS_WAIT_REPLICAS="
                               f"{self.core.settings.redis_wait_replicas}); it was not accepted, try again")

    def _check_hooks(self, extra, on_success, on_failure, callback_queue, reply_queue) -> backend_events.Hooks | None:
        """What the generation's end fires on RQ (None: nothing); bad input raises, nothing written."""
        if extra is not None and not isinstance(extra, dict):
            raise ValidationError("extra must be a dict")
        hooks = backend_events.Hooks(
            queue=backend_events.check_queue_name(callback_queue, "callback_queue"),
            on_success=backend_events.check_callback(on_success, "on_success"),
            on_failure=backend_events.check_callback(on_failure, "on_failure"),
            reply=backend_events.parse_reply_queue(reply_queue, self.core.settings.reply_queues))
        return hooks if hooks.any else None

    def rq_job(self, generation_id: str) -> Job:
        """The generation's RQ job (written now if it has none): RQ jobs `depends_on` it. It stays
        deferred while the generation runs and ends finished when it completed, failed when it failed
        or was canceled. NotFound when the generation is unknown or expired."""
        return backend_events.ensure(self.core, generation_id)

    @staticmethod
    def _unknown_account(spec, account: str | None) -> NotFound:
        if account is not None:
            return NotFound(f"Account {account} is not configured for {spec.name}")
        return NotFound(not_found_message(spec))

    def _check_submission(self, spec, operation, payload, account, reply_url, reply_ref) -> dict:
        """Validation that needs no Redis (the account's existence is checked with the admission)."""
        if not isinstance(operation, str) or not operation or len(operation) > 200:
            raise ValidationError("operation must be a non-empty string")
        spec.check_operation(operation)  # 404 naming the provider's operations; nothing stored
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise ValidationError("payload must be a JSON object")
        if len(upstream_json(payload)) > MAX_PAYLOAD_BYTES:
            raise ValidationError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes", status=413)
        validate_reply(reply_url, reply_ref, self.core.settings.callback_allow)
        if account is not None and (not isinstance(account, str) or not account):
            raise self._unknown_account(spec, account)
        for name, value in (("operation", operation), ("account", account), ("replyRef", reply_ref)):
            if value is not None and not utf8(value):
                raise ValidationError(f"{name} is not valid Unicode (a lone surrogate?)")
        return payload

    def get(self, generation_id: str) -> Generation:
        """The generation record (its internal or its useapi-style public id); NotFound when unknown."""
        return self.core.generations.get(generation_id)

    def cancel(self, generation_id: str) -> Generation:
        """Cancel: a waiting job leaves the line; a running one is cancelled upstream and frees its slot."""
        gen = self.core.generations.get(generation_id)
        provider = gen.provider
        while not self._cancel_in(gen):
            current = self.core.generations.get(gen.id)  # moved on meanwhile (e.g. admitted): act on that
            if current.terminal:
                return current  # already terminal: cancel is idempotent
            gen = current
        self.core.finished(gen.id)
        log.info("generation canceled", generation_id=gen.id, provider=provider)
        return self.core.generations.get(gen.id)

    def _cancel_in(self, gen: Generation) -> bool:
        """Cancel from the state `gen` was read in; False when the record was no longer in it."""
        provider = gen.provider
        if gen.state == WAITING:
            if not self.core.generations.move(gen.id, {WAITING}, CANCELED, error="canceled", payload={}):
                return False
            self.core.capacity(provider).cancel_waiting(gen.id, gen.pinned, priority=gen.priority, tenant=gen.tenant)
            self.core._unpark(provider, gen.parked)  # a canceled record is never enqueued by an admission
            # it may have been admitted between our read and the move: give the slot back
            if self.core.capacity(provider).holder(gen.id):
                self.core.dispatch(self.core.capacity(provider).release(gen.id))
            return True
        if gen.state == ADMITTED:
            # its start step may be submitting right now: that step (or, if it died, the reaper)
            # cancels any upstream job it created and only then releases the slot
            return self.core.generations.move(gen.id, {ADMITTED}, CANCELED, error="canceled", payload={})
        if gen.state == SUBMITTED:
            error = "canceled"
            try:
                token = ensure_token(self.core, provider, gen.account, flagged_ok=True)  # checked, never expired
                self.core.adapter(provider).cancel(token, gen.upstream_id)
            except DispatcherError as exc:  # a cancel always ends the generation; say what the upstream did
                error = f"canceled here; the upstream could not be told: {exc.message}"
                log.warning("upstream cancel failed", generation_id=gen.id, provider=provider, error=exc.message)
            if not self.core.generations.move(gen.id, {SUBMITTED}, CANCELED, error=error, payload={}):
                return False
            self.core.dispatch(self.core.capacity(provider).release(gen.id))
            return True
        return False

    def upload(self, provider: str, account_id: str, data: bytes, name: str,
               content_type: str = "application/octet-stream") -> dict[str, Any]:
        """Upload a file (an image for a first frame, …) to one account upstream; uploads belong to
        that account, so generations using it must run there. The file's `name` and MIME
        `content_type` go upstream with it. Returns the adapter's `{id, url}` with `name` and
        `contentType`."""
        spec = providers.get(provider)
        self.core.accounts.get(spec, account_id)  # 404 when unknown
        adapter = self.core.adapter(provider)
        token = ensure_token(self.core, provider, account_id)
        try:
            result = adapter.upload(token, data, name, content_type)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            token = ensure_token(self.core, provider, account_id, force=True, stale_token=token)
            result = adapter.upload(token, data, name, content_type)
        return {**result, "name": name, "contentType": content_type}

    def available(self, provider: str) -> dict[str, Any]:
        """Capacity per configured account (flagged ones show as not eligible) and the waiting lines:
        `{"accounts": {id: {maxJobs, executing, available, eligible, cooldown_until, usable_until,
        error}}, "waiting": n, "pinned": {id: n}}`; `cooldown_until` and `usable_until` (when the
        account's token stops taking new work) are epoch seconds, or None."""
        providers.get(provider)
        snap = self.core.capacity(provider).snapshot()  # the capacity script counts in milliseconds
        for values in snap["accounts"].values():
            for name in ("cooldown_until", "usable_until"):
                if values.get(name) is not None:
                    values[name] = values[name] / 1000
        for account in self.core.accounts.summaries(provider):  # plain fields: nothing decrypted
            snap["accounts"].setdefault(account.id, {
                "maxJobs": account.max_jobs, "executing": 0, "available": 0, "eligible": False,
                "cooldown_until": None, "usable_until": None})
            snap["accounts"][account.id]["error"] = account.error
        return snap

    def running(self, provider: str) -> list[dict[str, Any]]:
        """Generations holding a slot: `{id, account, started (epoch seconds), elapsed (seconds)}`."""
        providers.get(provider)
        now = time.time()
        out = []
        for item in self.core.capacity(provider).running():
            started = item["started_ms"] / 1000
            out.append({"id": item["generation_id"], "account": item["account"], "started": started,
                        "elapsed": round(now - started, 3)})
        return out


class Handle:
    """What `submit` returns: the generation's id, its status, and ways to wait or cancel."""

    def __init__(self, dispatcher: Dispatcher, generation_id: str):
        self._d = dispatcher
        self.id = generation_id
        self.generation: Generation | None = None  # as last read (`refresh`, `status`, `result`)

    def refresh(self) -> Generation:
        """Read the generation again (kept in `.generation`)."""
        self.generation = self._d.get(self.id)
        return self.generation

    @property
    def status(self) -> str:
        return self.refresh().state

    def result(self, timeout: float | None = None, interval: float = 0.2) -> Generation:
        """Wait until the generation ends; return it. Raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            gen = self.refresh()
            if gen.state not in LIVE:
                return gen
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"generation {self.id} still {gen.state} after {timeout}s")
            time.sleep(interval)

    def cancel(self) -> Generation:
        """Cancel it (see `Dispatcher.cancel`); idempotent."""
        return self._d.cancel(self.id)

    @property
    def rq_job(self) -> Job:
        """The generation's RQ job (`Dispatcher.rq_job`), for `depends_on`."""
        return self._d.rq_job(self.id)

    @property
    def rq_dependency(self) -> Job:
        """What `queue.enqueue(f, depends_on=handle.rq_dependency)` takes: `f` runs once the
        generation completed, never when it failed or was canceled (see `dependency`)."""
        return self.rq_job

    def dependency(self, allow_failure: bool = False) -> Dependency:
        """An `rq.Dependency` on the generation; `allow_failure=True`: the dependent runs once it
        ended, however (it reads how with `dispatcher.backends.generation_result()`)."""
        return Dependency(jobs=[self.rq_job], allow_failure=allow_failure)

    def __repr__(self) -> str:
        return f"<Handle {self.id}>"
