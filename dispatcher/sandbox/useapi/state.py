"""useapi.net's own state in the sandbox: API tokens, configured accounts (each holding the
session its provider gave it), the jobs run through the API, and the counters that make the
emulation an oracle (capacity violations, expired sessions used, duplicate generations).

Pure logic on top of the shared `Sandbox` (same clock, same seeded dice); no HTTP here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..model import ALIASES, BadRequest, Job, User
from ..state import Reject, Sandbox
from .specs import RETRY_AFTER, SPECS, Spec

COUNTERS = ("calls", "violations", "expired_token_requests", "duplicates", "rejected_429")


@dataclass(eq=False)
class Account:
    spec: Spec
    id: str
    user: User  # the sandbox user (the same person as on the provider's own emulation)
    max_jobs: int
    secret: str  # password, pasted token or cookie: never shown
    session: dict[str, Any]  # what the provider's login gave: token, exp, iat, …
    created: float
    error: str | None = None
    busy: int = 0  # slots taken by jobs outside this client (admin `useapi-busy`)
    busy_until: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class ApiJob:
    id: str
    account: Account
    job: Job  # the generation on the provider's emulation
    started: float
    kind: str
    reply_url: str | None = None
    reply_ref: str | None = None
    tracked: bool = True  # False once `DELETE /scheduler/{id}` stopped tracking it

    def running(self, now: float) -> bool:
        return self.tracked and self.job.phase(now) in ("pending", "running")


def provider_name(value: Any) -> str:
    name = ALIASES.get(value, value) if isinstance(value, str) else value
    if name not in SPECS:
        raise BadRequest(f"provider must be one of {', '.join(SPECS)}", "invalid_provider")
    return name


class UseapiState:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.reset()
        sb.plugins["useapi"] = self  # reset with the sandbox, shown in its stats

    def reset(self) -> None:
        self.tokens: set[str] = set()
        self.accounts: dict[str, dict[str, Account]] = {name: {} for name in SPECS}
        self.jobs: dict[str, ApiJob] = {}
        self.reply_refs: set[str] = set()
        self.counts: Counter = Counter()

    # ------------------------------------------------------------------ admin
    def add_token(self, token: Any) -> None:
        if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
            raise BadRequest("token must be a non-empty string without spaces", "invalid_token")
        self.tokens.add(token)

    def lookup(self, provider: Any, ident: Any) -> Account:
        account = self.accounts[provider_name(provider)].get(ident) if isinstance(ident, str) else None
        if account is None:
            raise KeyError(f"unknown useapi account {provider}/{ident}")
        return account

    def set_error(self, provider: Any, ident: Any, error: Any) -> Account:
        if error is not None and (not isinstance(error, str) or not error):
            raise BadRequest("error must be a non-empty string or null", "invalid_error")
        account = self.lookup(provider, ident)
        account.error = error
        return account

    def set_busy(self, provider: Any, ident: Any, jobs: Any, seconds: Any = None) -> Account:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
            raise BadRequest("jobs must be an integer >= 0", "invalid_jobs")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or seconds <= 0):
            raise BadRequest("seconds must be a number > 0 or absent", "invalid_seconds")
        account = self.lookup(provider, ident)
        account.busy = jobs
        account.busy_until = None if seconds is None or jobs == 0 else self.sb.clock() + seconds
        return account

    # ------------------------------------------------------------------ accounts
    def save(self, account: Account) -> Account:
        """Create or replace (a re-POST logs in again and clears `error`; outside jobs stay)."""
        old = self.accounts[account.spec.provider].get(account.id)
        if old is not None:
            account.busy, account.busy_until, account.created = old.busy, old.busy_until, old.created
            for api_job in self.jobs.values():
                if api_job.account is old:
                    api_job.account = account
        self.accounts[account.spec.provider][account.id] = account
        return account

    def delete(self, provider: str, ident: str) -> bool:
        account = self.accounts[provider].pop(ident, None)
        if account is None:
            return False
        for api_job in self.jobs.values():
            if api_job.account is account:
                api_job.tracked = False
        return True

    # ------------------------------------------------------------------ capacity
    def outside(self, account: Account, now: float) -> int:
        if account.busy_until is not None and account.busy_until <= now:
            account.busy, account.busy_until = 0, None
        return account.busy

    def own(self, account: Account, now: float) -> int:
        return sum(1 for j in self.running(account.spec.provider, now) if j.account is account)

    def running(self, provider: str, now: float) -> list[ApiJob]:
        return [j for j in self.jobs.values() if j.account.spec.provider == provider and j.running(now)]

    def pick(self, spec: Spec, pin: str | None, limit: int | None) -> Account:
        """The pinned account, or a random one with free capacity (useapi's balancing)."""
        table = self.accounts[spec.provider]
        if pin is not None:
            account = table.get(pin)
            if account is None:
                raise Reject(404, spec.not_configured(pin))
            return account
        if not table:
            raise Reject(404, spec.not_configured())
        healthy = [a for a in table.values() if not a.error]
        if not healthy:
            raise Reject(596, f"All configured {spec.label} accounts have pending errors, update them")
        now = self.sb.clock()
        free = [a for a in healthy if self.own(a, now) + self.outside(a, now) < (limit or a.max_jobs)]
        if not free:
            self.counts["rejected_429"] += 1
            if all(self.own(a, now) >= (limit or a.max_jobs) for a in healthy):
                self.counts["violations"] += 1
            raise Reject(429, f"All {spec.label} accounts are busy executing jobs",
                         {"Retry-After": str(RETRY_AFTER)})
        return self.sb.rng.choice(sorted(free, key=lambda a: a.id))

    def check_capacity(self, account: Account, limit: int | None) -> None:
        """429 when the account's executing jobs reach maxJobs; a violation when ours alone do."""
        now = self.sb.clock()
        limit = limit or account.max_jobs
        own = self.own(account, now)
        executing = own + self.outside(account, now)
        if executing >= limit:
            self.counts["rejected_429"] += 1
            if own >= limit:
                self.counts["violations"] += 1
            raise Reject(429, f"Account {account.id} is busy executing {executing} jobs",
                         {"Retry-After": str(RETRY_AFTER)})

    # ------------------------------------------------------------------ jobs
    def track(self, api_job: ApiJob) -> ApiJob:
        ref = api_job.reply_ref
        if ref:
            if ref in self.reply_refs:
                self.counts["duplicates"] += 1
            self.reply_refs.add(ref)
        self.jobs[api_job.id] = api_job
        return api_job

    def untrack(self, provider: str, job_id: str) -> bool:
        api_job = self.jobs.get(job_id)
        if api_job is None or api_job.account.spec.provider != provider or not api_job.running(self.sb.clock()):
            return False
        api_job.tracked = False
        return True

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.counts[name] for name in COUNTERS}
        out["accounts"] = sum(len(table) for table in self.accounts.values())
        return out
