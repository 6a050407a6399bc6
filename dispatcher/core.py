"""`Core`: the operations the workers, the JWT watch, maintenance and the HTTP layer share.

`Dispatcher` (client.py) is the public face: submit, get, cancel, accounts, views. Behind it,
`Core` holds the connections and stores and the operations that move generations and accounts
along: admitting (`dispatch`), requeueing, flagging and cooling accounts, health records,
finishing (callbacks, metrics). Workers (`workers/context.py`), tokens, metrics and maintenance
take a `Core`, typed; none of them needs the facade.
"""

from __future__ import annotations

import time

import httpx

from . import backend_events, keys, metrics, providers, shapes
from .accounts import ON_HOLD, OUT_OF_CREDITS, AccountStore
from .capacity import Admission, Capacity
from .capacity.policy import DEFAULT_AGING_MS
from .connection import connect, connect_rq, url_for
from .errors import ConfigurationError, UpstreamError
from .generations import ADMITTED, FAILED, WAITING, Generation, GenerationStore, provider_of
from .health import FailureWindow
from .logging import get_logger, register_secret
from .providers import Adapter, ProviderSpec, Session
from .providers.useapi import UseapiAdapter
from .secrets import Vault
from .settings import Settings
from .steps import StepQueue
from .tokens import refresh_margin as token_refresh_margin

log = get_logger()


class Core:

    def __init__(self, redis_url: str, settings: Settings | None = None, *, http: httpx.Client | None = None):
        self.settings = settings or Settings.from_env()
        self.redis_url = redis_url
        self.r = connect(redis_url, sentinel_password=self.settings.redis_sentinel_password)
        self.rq = connect_rq(redis_url, sentinel_password=self.settings.redis_sentinel_password)
        self.vault = Vault.from_settings(self.settings)
        self.accounts = AccountStore(self.r, self.vault)
        self.generations = GenerationStore(self.r, result_ttl=self.settings.result_ttl,
                                           failure_ttl=self.settings.failure_ttl)
        self.steps = StepQueue(self.rq)
        self.http = http or httpx.Client(timeout=self.settings.upstream_timeout)
        register_secret(self.settings.useapi_token)  # masked wherever it might show up in a log line
        for pair in self.settings.upstreams:
            if pair.partition("=")[0] not in providers.REGISTRY:
                raise ConfigurationError(f"DISPATCHER_UPSTREAM_{pair.partition('=')[0].upper()}: no such provider; "
                                         f"known: {', '.join(sorted(providers.REGISTRY))}")
        self._capacity: dict[str, Capacity] = {}
        self.callback_secret = self.settings.callback_secret or self.vault.key
        self._failures = FailureWindow(self.r, window=self.settings.failure_window)
        self.deferred_metrics: metrics.Deferred | None = None  # a worker defers its samples (see metrics)

    @classmethod
    def from_settings(cls, settings: Settings, **kw) -> "Core":
        """A Core on the configured Redis (the embedded one, started, when none is set)."""
        return cls(settings.redis_url or url_for(settings), settings, **kw)

    def close(self) -> None:
        metrics.flush(self)
        self.http.close()
        self.r.close()
        self.rq.close()

    def capacity(self, provider: str) -> Capacity:
        if provider not in self._capacity:
            cap = Capacity(self.r, provider, lease_ttl_ms=int(self.settings.lease_ttl * 1000),
                           max_waiting=self.settings.max_waiting)
            self._capacity[provider] = cap
            s = self.settings
            # the admission policy the scripts read: every process writes the same (from the settings);
            # the default one is no stored policy at all, so a default deployment writes nothing here
            policy = {"aging_ms": int(s.priority_aging * 1000), "weights": s.tenant_table("weights"),
                      "caps": s.tenant_table("caps")}
            if policy != {"aging_ms": DEFAULT_AGING_MS, "weights": {}, "caps": {}} or self.r.exists(keys.policy(provider)):
                self.dispatch(cap.set_policy(**policy))
        return self._capacity[provider]

    def adapter(self, provider: str, *, max_jobs: int | None = None) -> Adapter:
        """The provider's adapter for its configured upstream kind (`direct` or `useapi`).
        `max_jobs`: the admitting account's, sent as useapi's per-request maxJobs on a create."""
        spec = providers.get(provider)
        if self.settings.upstream_kind(spec.name) == "useapi":
            if spec.useapi is None:
                raise ConfigurationError(f"{spec.title} cannot be reached through useapi: it declares no useapi dialect")
            return UseapiAdapter(self.http, self.settings.useapi_url, token=self.settings.useapi_token or "",
                                 spec=spec, dialect=spec.useapi, max_jobs=max_jobs)
        return spec.adapter(self.http, self.settings.upstream_url)

    def refresh_kind(self, spec: ProviderSpec) -> str:
        """How this provider's sessions renew on its configured upstream: relogin, refresh_token,
        upstream (useapi renews it; we re-read it) or none (flag before expiry)."""
        if self.settings.upstream_kind(spec.name) == "useapi" and spec.useapi is not None:
            return spec.useapi.refresh
        return spec.refresh

    def open_account(self, spec: ProviderSpec, credentials: dict, max_jobs: int, session: Session,
                     pace: tuple[int | None, int | None] = (None, None)) -> str:
        """Store an account after a login (create or replace: its error and cooldown cleared), and
        open its slots; `pace`: at most this many admissions per minute and per day. Returns its id."""
        account_id = self.accounts.save(spec, credentials, max_jobs, session)
        cap = self.capacity(spec.name)
        cap.set_pace(account_id, *pace)
        cap.set_cooldown(account_id, None)
        cap.set_usable_until(account_id, self.usable_until_ms(spec, session))
        self.dispatch(cap.set_account(account_id, max_jobs))
        return account_id

    def usable_until_ms(self, spec: ProviderSpec, session: Session) -> int:
        """Past this instant admission stops using the account's token.

        A refreshable token is usable to its expiry (the JWT watch refreshes it
        ahead of time); one that cannot be refreshed stops a margin before."""
        if self.refresh_kind(spec) == "none":
            return int((session.expires_at - self.refresh_margin(session)) * 1000)
        return int(session.expires_at * 1000)

    def refresh_margin(self, session: Session) -> float:
        return token_refresh_margin(self.settings, session)  # the rule and its floor live with the JWT watch

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

    def operation_failed(self, provider: str, account_id: str | None, operation: str) -> bool:
        """Count a refusal (422) or failure of `operation` on the account; after
        `quarantine_after` of them within `quarantine_window` seconds the account takes none of that
        operation for `quarantine_seconds` (it keeps serving the others). True when it did."""
        s = self.settings
        if not account_id or s.quarantine_after <= 0:
            return False
        key = keys.operation_failures(provider, account_id, operation)
        pipe = self.r.pipeline(transaction=True)
        pipe.set(key, 0, nx=True, px=int(s.quarantine_window * 1000))  # the window starts at the first
        pipe.incr(key)
        _, count = pipe.execute()
        if count < s.quarantine_after:
            return False
        self.r.delete(key)
        until_ms = int((time.time() + s.quarantine_seconds) * 1000)
        self.dispatch(self.capacity(provider).quarantine(account_id, operation, until_ms))
        log.warning("account quarantined for an operation", provider=provider, account=account_id,
                    operation=operation, failures=count, seconds=s.quarantine_seconds)
        return True

    def retry_after(self, provider: str, operation: str | None) -> int:
        """Seconds until some account could take a generation of `operation`: the earliest end of
        a cooldown, a full pacing window or a quarantine when every account is held by one of
        those; 10 when some account is only full (a slot frees when a running job ends, unknown)."""
        cap = self.capacity(provider)
        snap, paces, quar = cap.snapshot(), cap.paces(), cap.quarantines()
        now_ms, ends = time.time() * 1000, []
        for a, row in snap["accounts"].items():
            held = [row["cooldown_until"] or 0,
                    *(w["frees_at_ms"] or 0 for w in paces.get(a, {}).values()),
                    quar.get(a, {}).get(operation or "", 0)]
            end = max(held)
            if end <= now_ms:
                return 10  # held by nothing timed: only its slots are full
            ends.append(end)
        return max(1, min(int((min(ends) - now_ms) / 1000) + 1, 3600)) if ends else 10

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
        result = cap.acquire(gen.id, account=gen.pinned, known=gen.pinned is not None, wait=True, front=True,
                             priority=gen.priority, tenant=gen.tenant, operation=gen.operation)
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
                    cap.cancel_waiting(gen.id, gen.pinned, priority=gen.priority, tenant=gen.tenant)
                    self._unpark(provider, gen.parked)
                    if cap.holder(gen.id):  # admitted meanwhile (account re-posted): give the slot back
                        self.dispatch(cap.release(gen.id))
                    self.finished(gen.id)
                    failed += 1
        return failed

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
        if gen.extra.get("rq"):
            backend_events.discard_in(pipe, self, gen)
        pipe.execute()

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

    def finished(self, generation_id: str, gen: Generation | None = None) -> None:
        """A generation reached a terminal state: fire its callback (never delays the release).

        `gen`: the record as just written by its terminal move, when the caller has it
        (saves reading it back)."""
        gen = gen if gen is not None else self.generations.find(generation_id)
        metrics.finished(self, gen)
        if gen and gen.reply_url:
            self.steps.callback(generation_id, self.settings.callback_retries)
        if gen and gen.extra.get("rq"):  # its RQ job: released for the backends' dependents and callbacks
            try:
                backend_events.release(self, generation_id)
            except Exception as exc:  # maintenance's sweep hands it over (backend_events.sweep)
                log.warning("generation's RQ job not released", generation_id=generation_id, error=type(exc).__name__)

    def callback_body(self, gen: Generation) -> dict:
        """What a replyUrl receives: the generation as the status endpoint answers it
        (the provider-shaped object, with `replyRef`, for one created through those endpoints)."""
        if shapes.shape_of(gen):
            return shapes.render(gen)
        return gen.to_dict()

    def token_for(self, provider: str, account_id: str) -> str:
        session = self.accounts.session(providers.get(provider), account_id)  # its credentials stay sealed
        if session is None:
            raise UpstreamError(f"Account {account_id} has no session", status=401)
        return session.token
