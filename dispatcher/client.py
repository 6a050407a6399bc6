"""`Dispatcher`: the Python facade over accounts, capacity and generations.

Everything that decides lives behind this class; the HTTP API, the CLI and
the workers call it. Data flows one way: API → Dispatcher → Redis ← workers.
"""

from __future__ import annotations

import time

import httpx

from . import keys, metrics, providers, removal
from .accounts import ON_HOLD, OUT_OF_CREDITS, AccountStore, not_found_message, render, validate_body
from .capacity import Admission, Capacity
from .connection import connect, connect_rq, url_for
from .errors import DispatcherError, NoCapacity, NotFound, UpstreamError, ValidationError
from .generations import (ADMITTED, CANCELED, FAILED, LIVE, SUBMITTED, WAITING, Generation,
                          GenerationStore, new_id, provider_of, validate_reply)
from .health import FailureWindow
from .logging import get_logger
from .payloads import MAX_PAYLOAD_BYTES, upstream_json, utf8
from .providers import ProviderSpec, Session
from .secrets import Vault
from .settings import Settings
from .steps import StepQueue
from .tokens import ensure_token, refresh_margin as token_refresh_margin

log = get_logger()


class Dispatcher:
    def __init__(self, redis_url: str, settings: Settings | None = None, *, http: httpx.Client | None = None):
        self.settings = settings or Settings.from_env()
        self.redis_url = redis_url
        self.r = connect(redis_url)
        self.rq = connect_rq(redis_url)
        self.vault = Vault.from_settings(self.settings)
        self.accounts = AccountStore(self.r, self.vault)
        self.generations = GenerationStore(self.r, result_ttl=self.settings.result_ttl,
                                           failure_ttl=self.settings.failure_ttl)
        self.steps = StepQueue(self.rq)
        self.http = http or httpx.Client(timeout=self.settings.upstream_timeout)
        self._capacity: dict[str, Capacity] = {}
        self.callback_secret = self.settings.callback_secret or self.vault.key
        self._failures = FailureWindow(self.r, window=self.settings.failure_window)
        self.deferred_metrics: metrics.Deferred | None = None  # a worker defers its samples (see metrics)

    @classmethod
    def from_url(cls, redis_url: str | None = None, settings: Settings | None = None, **kw) -> "Dispatcher":
        settings = settings or Settings.from_env()
        return cls(redis_url or url_for(settings), settings, **kw)

    def close(self) -> None:
        metrics.flush(self)
        self.http.close()
        self.r.close()
        self.rq.close()

    # -- parts ------------------------------------------------------------------
    def capacity(self, provider: str) -> Capacity:
        if provider not in self._capacity:
            self._capacity[provider] = Capacity(self.r, provider, lease_ttl_ms=int(self.settings.lease_ttl * 1000),
                                                max_waiting=self.settings.max_waiting)
        return self._capacity[provider]

    def adapter(self, provider: str):
        return providers.get(provider).adapter(self.http, self.settings.upstream_url)

    def usable_until_ms(self, spec: ProviderSpec, session: Session) -> int:
        """Past this instant admission stops using the account's token.

        A refreshable token is usable to its expiry (the JWT watch refreshes it
        ahead of time); one that cannot be refreshed stops a margin before."""
        if spec.refresh == "none":
            return int((session.expires_at - self.refresh_margin(session)) * 1000)
        return int(session.expires_at * 1000)

    def refresh_margin(self, session: Session) -> float:
        return token_refresh_margin(self.settings, session)  # the rule and its floor live with the JWT watch

    # -- accounts -----------------------------------------------------------------
    def upsert_account(self, provider: str, body: dict, path_id: str | None = None) -> dict:
        """Log in upstream, then store the account (create or replace) and open its slots."""
        spec = providers.get(provider)
        credentials, max_jobs = validate_body(spec, body, path_id)
        try:
            session = self.adapter(provider).login(credentials)  # raises LoginFailed: nothing stored
        except UnicodeEncodeError:  # a credential sent in an HTTP header (token, cookie) must be ASCII
            raise ValidationError("A credential holds characters that cannot be sent upstream (not ASCII)") from None
        account_id = self.accounts.save(spec, credentials, max_jobs, session)
        cap = self.capacity(provider)
        cap.set_cooldown(account_id, None)
        cap.set_usable_until(account_id, self.usable_until_ms(spec, session))
        self.dispatch(cap.set_account(account_id, max_jobs))
        log.info("account saved", provider=provider, account=account_id, max_jobs=max_jobs)
        return self.account_view(provider, account_id)

    def account_view(self, provider: str, account_id: str) -> dict:
        spec = providers.get(provider)
        account = self.accounts.get(spec, account_id)
        return render(spec, account, cooldown_until=self._cooldown(provider, account_id))

    def list_accounts(self, provider: str) -> dict:
        spec = providers.get(provider)
        found = self.accounts.all(spec)  # the listing shows every account's masked token: all opened
        if not found:
            raise NotFound(not_found_message(spec))
        table = self.r.hgetall(keys.cooldown(provider))  # one read, not one per account
        return {a.id: render(spec, a, cooldown_until=self._cooldown(provider, a.id, table)) for a in found}

    def _cooldown(self, provider: str, account_id: str, table: dict | None = None) -> float | None:
        """Until when the account cools down (None: it does not); `table`: the cooldown hash, read already."""
        ms = table.get(account_id) if table is not None else self.r.hget(keys.cooldown(provider), account_id)
        return int(ms) / 1000 if ms else None

    def delete_account(self, provider: str, account_id: str) -> None:
        spec = providers.get(provider)
        self.accounts.get(spec, account_id)  # 404 when unknown
        failed, admitted = self.capacity(provider).remove_account(account_id)  # out of rotation first
        removal.end_running(self, provider, account_id)  # none of its generations is left stranded
        self.accounts.delete(spec, account_id)
        for gen in self.generations.many(failed) if failed else ():
            if gen is None:
                continue
            self.generations.move(gen.id, {WAITING}, FAILED, error=removal.deleted_message(account_id),
                                  error_code=404)
            self._unpark(provider, gen.parked)
            self.finished(gen.id)
        self.dispatch(admitted)
        log.info("account deleted", provider=provider, account=account_id)

    def flag_account(self, provider: str, account_id: str, error: str, *, hold: float = 0.0,
                     code: int = ON_HOLD) -> None:
        """Take an account out of rotation with a reason shown in GET; re-POST clears it.

        With `hold` (596: account on hold) the flag clears itself after that many seconds."""
        self.accounts.flag(provider, account_id, error, until=time.time() + hold if hold else None, code=code)
        self.capacity(provider).disable_account(account_id)
        metrics.flagged(self, provider, account_id)
        log.warning("account flagged", provider=provider, account=account_id, error=error)
        self.fail_stranded(provider)

    def unflag_expired(self, provider: str) -> None:
        """Return accounts whose temporary flag (hold) has ended to rotation (plain fields: nothing decrypted)."""
        providers.get(provider)
        for account in self.accounts.summaries(provider):
            if account.error and account.error_until and account.error_until <= time.time():
                self.accounts.unflag(provider, account.id)
                self.dispatch(self.capacity(provider).set_account(account.id, account.max_jobs))
                log.info("account back in rotation", provider=provider, account=account.id)

    def cooldown_account(self, provider: str, account_id: str, seconds: float) -> None:
        """Keep an account out of rotation for a while (429, failure rate); it returns by itself."""
        until_ms = int((time.time() + seconds) * 1000)
        self.dispatch(self.capacity(provider).set_cooldown(account_id, until_ms))
        metrics.cooldown(self, provider, account_id)
        log.info("account cooling down", provider=provider, account=account_id, seconds=round(seconds, 3))

    def health_ok(self, provider: str, account_id: str) -> None:
        self._failures.record(keys.failures(provider, account_id), True)

    def health_ok_in(self, pipe, provider: str, account_id: str) -> None:
        """`health_ok` riding on a pipeline the caller runs anyway (its replies need no reading)."""
        self._failures.record_ok_in(pipe, keys.failures(provider, account_id))

    def health_failed(self, provider: str, account_id: str) -> None:
        if self._failures.record(keys.failures(provider, account_id), False):
            self.cooldown_account(provider, account_id, self.settings.cooldown_429)

    def requeue(self, generation_id: str) -> None:
        """Put an admitted generation (not accepted upstream) back at the head of its line,
        releasing its slot."""
        gen = self.generations.get(generation_id)
        # back to waiting with a fresh parked start job, in one round trip
        pipe = self.r.pipeline(transaction=True)
        parked = self.steps.park_in(pipe, gen.provider, gen.id)
        moved = self.generations.move_in(pipe, gen.id, {ADMITTED}, WAITING, account=None, admitted_at=None,
                                         parked=parked)
        if not moved(pipe.execute(raise_on_error=False)[-1]):
            self._unpark(gen.provider, parked)
            return
        cap = self.capacity(gen.provider)
        self.dispatch(cap.release(gen.id))
        # back at the head of its line: it was admitted once and keeps its turn
        result = cap.acquire(gen.id, account=gen.pinned, known=gen.pinned is not None, wait=True, front=True)
        self.dispatch(result.admitted)
        if gen.extra.get("fail_fast"):
            self.fail_stranded(gen.provider)

    def fail_stranded(self, provider: str) -> int:
        """Fail the `fail_fast` generations (useapi semantics) that wait for accounts all out of
        rotation: those pinned to a flagged account, and every waiter once all accounts are flagged.
        They fail with the account's error and useapi's code (412 out of credits, else 596)."""
        flagged = {a.id: a for a in self.accounts.summaries(providers.get(provider).name) if a.error}
        if not flagged:
            return 0
        lines = [(a, keys.pinned(provider, a)) for a in sorted(flagged)]
        if set(flagged) == set(self.accounts.ids(provider)):
            lines.append((None, keys.waiting(provider)))
        cap, failed = self.capacity(provider), 0
        for account, line in lines:
            ids = self.r.lrange(line, 0, -1)
            for gen in self.generations.many(ids) if ids else ():
                if gen is None or gen.state != WAITING or not gen.extra.get("fail_fast"):
                    continue
                causes = [flagged[account]] if account else [flagged[a] for a in sorted(flagged)]
                errors = [a.error for a in causes]
                code = OUT_OF_CREDITS if all(a.error_code == OUT_OF_CREDITS for a in causes) else ON_HOLD
                if self.generations.move(gen.id, {WAITING}, FAILED, error="; ".join(errors), error_code=code):
                    cap.cancel_waiting(gen.id, gen.pinned)
                    self._unpark(provider, gen.parked)
                    if cap.holder(gen.id):  # admitted meanwhile (account re-posted): give the slot back
                        self.dispatch(cap.release(gen.id))
                    self.finished(gen.id)
                    failed += 1
        return failed

    # -- generations ----------------------------------------------------------------
    def submit(self, provider: str, operation: str, payload: dict | None = None, *, account: str | None = None,
               reply_url: str | None = None, reply_ref: str | None = None, wait: bool = True,
               extra: dict | None = None) -> "Handle":
        """`extra` is kept on the record: `shape` (render as that provider's status object, see
        `dispatcher.shapes`) and `fail_fast` (fail rather than wait when no account it may use is in rotation)."""
        spec = providers.get(provider)
        payload = self._check_submission(spec, operation, payload, account, reply_url, reply_ref)
        if extra is not None and not isinstance(extra, dict):
            raise ValidationError("extra must be a dict")
        gen = Generation(id=new_id(provider), provider=provider, operation=operation, payload=payload,
                         state=WAITING, created=time.time(), pinned=account, reply_url=reply_url, reply_ref=reply_ref,
                         extra=dict(extra or {}))
        cap = self.capacity(provider)
        # one round trip, all or nothing (MULTI): the record, then the admission, which first
        # checks that the account (or any account) exists and otherwise changes nothing. A
        # connection lost before EXEC leaves no record without its line entry; the record is
        # written first, so a start step never finds a slot without one.
        # Its start job is written too, parked: the admission (now or when it reaches the
        # head of its line) enqueues it atomically.
        required = keys.account(provider, account) if account is not None else keys.accounts(provider)
        pipe = self.r.pipeline(transaction=True)
        gen.parked = self.steps.park_in(pipe, provider, gen.id)
        created = self.generations.create_in(pipe, gen)
        acquired = cap.acquire_in(pipe, gen.id, account=account, known=account is not None, wait=wait,
                                  require=required)
        *_, record, reply = pipe.execute(raise_on_error=False)
        try:
            created(record)
            result = acquired(reply)
        except Exception as exc:
            # refused, missing account or failed: the generation never entered a line, so
            # nothing can have admitted it, and nothing of this submission stays
            self._discard(gen)
            if isinstance(exc, NoCapacity):
                self.dispatch(getattr(exc, "admitted", ()))  # waiters the pump admitted before refusing
            if isinstance(exc, NotFound):
                raise self._unknown_account(spec, account) from None
            raise
        self.dispatch(result.admitted)
        log.info("generation submitted", generation_id=gen.id, provider=provider, status=result.status,
                 account=result.account)
        return Handle(self, gen.id)

    def _unpark(self, provider: str, job_id: str | None) -> None:
        if job_id:
            pipe = self.r.pipeline(transaction=False)
            self.steps.unpark_in(pipe, provider, job_id)
            pipe.execute()

    def _discard(self, gen: Generation) -> None:
        """Delete a generation that never entered a line, and its parked start job."""
        pipe = self.r.pipeline(transaction=False)
        self.steps.unpark_in(pipe, gen.provider, gen.parked)
        pipe.delete(keys.generation(gen.provider, gen.id))
        pipe.execute()

    @staticmethod
    def _unknown_account(spec, account: str | None) -> NotFound:
        if account is not None:
            return NotFound(f"Account {account} is not configured for {spec.name}")
        return NotFound(not_found_message(spec))

    def _check_submission(self, spec, operation, payload, account, reply_url, reply_ref) -> dict:
        """Validation that needs no Redis (the account's existence is checked with the admission)."""
        if not isinstance(operation, str) or not operation or len(operation) > 200:
            raise ValidationError("operation must be a non-empty string")
        if spec.operations and operation not in spec.operations:
            raise NotFound(f"Unknown operation {operation!r} for {spec.name}")
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise ValidationError("payload must be a JSON object")
        if len(upstream_json(payload)) > MAX_PAYLOAD_BYTES:
            raise ValidationError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes", status=413)
        validate_reply(reply_url, reply_ref, self.settings.callback_allow)
        if account is not None and (not isinstance(account, str) or not account):
            raise self._unknown_account(spec, account)
        for name, value in (("operation", operation), ("account", account), ("replyRef", reply_ref)):
            if value is not None and not utf8(value):
                raise ValidationError(f"{name} is not valid Unicode (a lone surrogate?)")
        return payload

    def dispatch(self, admissions: list[Admission] | tuple[Admission, ...]) -> None:
        """Turn admissions made by a capacity script into start steps on RQ: those whose parked
        start job the script enqueued itself only count; the others (no parked job: canceled
        meanwhile, or submitted by an older version) get one here."""
        batch = list(admissions)
        while batch:
            batch = self._dispatch_batch(batch)

    def _dispatch_batch(self, admitted: list[Admission]) -> list[Admission]:
        """One script's admissions; returns those of the releases this made (canceled waiters)."""
        pending = [a for a in admitted if not a.enqueued]
        more: list[Admission] = []
        if not pending:
            metrics.admitted(self, admitted)
            return more
        counted = False

        def before(pipe, job_id, a):
            nonlocal counted
            # `parked` cleared: a parked job this record still names (an older version admitted
            # it) is left to maintenance's sweep
            moved = self.generations.move_in(pipe, a.generation_id, {WAITING}, ADMITTED, account=a.account,
                                             admitted_at=time.time(), step=job_id, due=time.time(), parked=None)
            if not counted:  # the admissions' counters ride on the first enqueue's round trip
                metrics.admitted(self, admitted, pipe)
                counted = True
            return moved

        for a in pending:
            provider = provider_of(a.generation_id)
            # the move (which records the step) and the start step's enqueue: one round trip
            moved = self.steps.start_after(provider, a.generation_id, a.account,
                                           lambda pipe, job_id, a=a: before(pipe, job_id, a))
            if not moved:  # that start step is not the record's `step`: it exits at once
                gen = self.generations.find(a.generation_id)
                if gen is None or gen.terminal:  # canceled or gone while waiting: give the slot back
                    more += self.capacity(provider).release(a.generation_id)
                    continue
                self.steps.start(provider, a.generation_id, a.account)
        return more

    def get(self, generation_id: str) -> Generation:
        return self.generations.get(generation_id)

    def cancel(self, generation_id: str) -> Generation:
        """Cancel: a waiting job leaves the line; a running one is cancelled upstream and frees its slot."""
        gen = self.generations.get(generation_id)
        provider = gen.provider
        while not self._cancel_in(gen):
            current = self.generations.get(gen.id)  # moved on meanwhile (e.g. admitted): act on that
            if current.terminal:
                return current  # already terminal: cancel is idempotent
            gen = current
        self.finished(gen.id)
        log.info("generation canceled", generation_id=gen.id, provider=provider)
        return self.generations.get(gen.id)

    def _cancel_in(self, gen: Generation) -> bool:
        """Cancel from the state `gen` was read in; False when the record was no longer in it."""
        provider = gen.provider
        if gen.state == WAITING:
            if not self.generations.move(gen.id, {WAITING}, CANCELED, error="canceled", payload={}):
                return False
            self.capacity(provider).cancel_waiting(gen.id, gen.pinned)
            self._unpark(provider, gen.parked)  # a canceled record is never enqueued by an admission
            # it may have been admitted between our read and the move: give the slot back
            if self.capacity(provider).holder(gen.id):
                self.dispatch(self.capacity(provider).release(gen.id))
            return True
        if gen.state == ADMITTED:
            # its start step may be submitting right now: that step (or, if it died, the reaper)
            # cancels any upstream job it created and only then releases the slot
            return self.generations.move(gen.id, {ADMITTED}, CANCELED, error="canceled", payload={})
        if gen.state == SUBMITTED:
            error = "canceled"
            try:
                token = ensure_token(self, provider, gen.account, flagged_ok=True)  # checked, never expired
                self.adapter(provider).cancel(token, gen.upstream_id)
            except DispatcherError as exc:  # a cancel always ends the generation; say what the upstream did
                error = f"canceled here; the upstream could not be told: {exc.message}"
                log.warning("upstream cancel failed", generation_id=gen.id, provider=provider, error=exc.message)
            if not self.generations.move(gen.id, {SUBMITTED}, CANCELED, error=error, payload={}):
                return False
            self.dispatch(self.capacity(provider).release(gen.id))
            return True
        return False

    def finished(self, generation_id: str, gen: Generation | None = None) -> None:
        """A generation reached a terminal state: fire its callback (never delays the release).

        `gen`: the record as just written by its terminal move, when the caller has it
        (saves reading it back)."""
        gen = gen if gen is not None else self.generations.find(generation_id)
        metrics.finished(self, gen)
        if gen and gen.reply_url:
            self.steps.callback(generation_id, self.settings.callback_retries)

    def callback_body(self, gen: Generation) -> dict:
        """What a replyUrl receives: the generation as the status endpoint answers it
        (the provider-shaped object, with `replyRef`, for one created through those endpoints)."""
        from . import shapes

        if shapes.shape_of(gen):
            return shapes.render(gen)
        return gen.to_dict()

    # -- tokens ---------------------------------------------------------------------
    def token_for(self, provider: str, account_id: str) -> str:
        session = self.accounts.session(providers.get(provider), account_id)  # its credentials stay sealed
        if session is None:
            raise UpstreamError(f"Account {account_id} has no session", status=401)
        return session.token

    def upload(self, provider: str, account_id: str, data: bytes, name: str) -> dict:
        """Upload a file (an image for a first frame, …) to one account upstream; uploads belong to
        that account, so generations using it must run there. Returns the adapter's `{id, url}`."""
        spec = providers.get(provider)
        self.accounts.get(spec, account_id)  # 404 when unknown
        adapter = self.adapter(provider)
        token = ensure_token(self, provider, account_id)
        try:
            return adapter.upload(token, data, name)
        except UpstreamError as exc:
            if exc.status != 401:
                raise
            token = ensure_token(self, provider, account_id, force=True, stale_token=token)
            return adapter.upload(token, data, name)

    # -- views ----------------------------------------------------------------------
    def available(self, provider: str) -> dict:
        """Capacity per configured account (flagged ones show as not eligible) and the waiting lines."""
        providers.get(provider)
        snap = self.capacity(provider).snapshot()
        for account in self.accounts.summaries(provider):  # plain fields: nothing decrypted
            snap["accounts"].setdefault(account.id, {
                "maxJobs": account.max_jobs, "executing": 0, "available": 0, "eligible": False,
                "cooldown_until": None, "usable_until": None})
            snap["accounts"][account.id]["error"] = account.error
        return snap

    def running(self, provider: str) -> list[dict]:
        providers.get(provider)
        now = time.time()
        out = []
        for item in self.capacity(provider).running():
            started = item["started_ms"] / 1000
            out.append({"id": item["generation_id"], "account": item["account"], "started": started,
                        "elapsed": round(now - started, 3)})
        return out


class Handle:
    """What `submit` returns: the generation's id, its status, and ways to wait or cancel."""

    def __init__(self, dispatcher: Dispatcher, generation_id: str):
        self._d = dispatcher
        self.id = generation_id
        self.generation: Generation | None = None

    def refresh(self) -> Generation:
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
        return self._d.cancel(self.id)

    def __repr__(self) -> str:
        return f"<Handle {self.id}>"
