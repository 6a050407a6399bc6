"""Thin Python face of the capacity Lua scripts.

Every decision is taken inside one Lua script per call (one EVALSHA round trip):
which account gets a generation, who waits, who is admitted when room appears.
This module only builds KEYS/ARGV, draws the seed, and turns replies into values.
Scripts live in `scripts/<name>.lua`; `scripts/_pump.lua` (shared prelude: keys,
Redis TIME, PRNG, admit, pump) is prepended to each by the Lua loader (`dispatcher.lua`),
which also fills in RQ's key names there (`rq_glue.LUA_NAMES`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from redis.exceptions import NoScriptError

from .. import keys, lua, rq_glue
from ..errors import NoCapacity, NotFound, ValidationError
from .policy import DEFAULT_AGING_MS, DEFAULT_PRIORITY, check_priority, check_tenant, line_name, no_pace, pace_views, quarantine_table
from .names import check_derived_names as _check_derived_names
from .prng import seed_arg

SCRIPT_NAMES = (
    "acquire", "release", "renew", "reap", "pump", "configure",
    "cancel", "expired", "snapshot", "running",
)
SCRIPTS = lua.Family(Path(__file__).parent / "scripts", SCRIPT_NAMES, prelude="_pump", values=rq_glue.LUA_NAMES)
SCRIPTS.sources  # noqa: B018 - built at import: a script that cannot be loaded stops the process at start-up
FULL_RETRY_AFTER = 30  # seconds a client refused by a full waiting line is told to wait
_NKEYS = 1  # KEYS of every capacity script: the cap key; scripts/_pump.lua derives the rest

def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat) -> list:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


@dataclass(frozen=True)
class Admission:
    generation_id: str
    account: str
    # the script also enqueued the generation's parked RQ start job (and moved its record
    # to admitted); otherwise `Core.dispatch` enqueues one. Not part of equality:
    # which admissions happen is the capacity model's business, how they start is not.
    enqueued: bool = field(default=False, compare=False)
    # the id of that start job when the caller claimed it to run itself (`release(claim_ttl=…)`):
    # marked started, not on RQ's queue; the caller runs it and records its outcome
    claimed: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AcquireResult:
    status: str  # "admitted" | "waiting"
    account: str | None
    position: int | None  # 1-based place in its line when waiting
    admitted: tuple[Admission, ...]  # every admission this call made, its own included


def _admission(g, a, e) -> Admission:
    if isinstance(e, int):  # 1: enqueued by the script, 0: not
        return Admission(_s(g), _s(a), e == 1)
    return Admission(_s(g), _s(a), True, _s(e))  # the claimed start job's id


def _admissions(flat) -> list[Admission]:
    """The scripts' flat admissions g1, a1, e1, g2, ... (see scripts/_pump.lua)."""
    return [_admission(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def _check_id(kind: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{kind} must be a non-empty string, got {value!r}")
    return value


def _check_int(kind: str, value, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValidationError(f"{kind} must be an integer{bound}, got {value!r}")
    return value


class Capacity:
    """The capacity semaphore of one provider: accounts, leases, waiting lines.

    Works with `redis.Redis` and `redis.cluster.RedisCluster` (every key carries
    the provider's hash tag, so each script touches one slot).
    """

    def __init__(self, client, provider: str, *, lease_ttl_ms: int = 30_000, rng: random.Random | None = None,
                 max_waiting: int = 0):
        self.client = client
        self.provider = _check_id("provider", provider)
        self.lease_ttl_ms = _check_int("lease_ttl_ms", lease_ttl_ms, minimum=1)
        self.max_waiting = _check_int("max_waiting", max_waiting, minimum=0)  # 0: no cap
        self._rng = rng or random.SystemRandom()
        # The one declared key (scripts/_pump.lua names the others from its prefix),
        # encoded once: each call then only encodes its own arguments.
        _check_derived_names(provider)
        self._keys = (keys.cap(provider).encode(),)
        self._scripts = SCRIPTS.registered(client)

    # -- plumbing ---------------------------------------------------------------
    def _argv(self, args, seed, ttl_ms) -> tuple:
        seed = self._rng.getrandbits(31) if seed is None else seed
        ttl = self.lease_ttl_ms if ttl_ms is None else ttl_ms
        return (*self._keys, seed_arg(seed), ttl, *args)

    def _run(self, name: str, *args, seed: int | None = None, ttl_ms: int | None = None):
        return self._call(name, self._argv(args, seed, ttl_ms))

    def _call(self, name: str, argv: tuple):
        # EVALSHA straight through execute_command: redis-py's Script.__call__ rebuilds
        # the argument tuple and wraps the call; here the keys are pre-encoded and a
        # NOSCRIPT (empty script cache after a Redis restart) loads the script once.
        script = self._scripts[name]
        try:
            return self.client.execute_command("EVALSHA", script.sha, _NKEYS, *argv)
        except NoScriptError:
            script.sha = self.client.script_load(script.script)
            return self.client.execute_command("EVALSHA", script.sha, _NKEYS, *argv)

    def _queue(self, pipe, name: str, *args, seed: int | None = None, ttl_ms: int | None = None):
        """Queue a script on a pipeline (any client of the same Redis) so it shares a round
        trip with other commands; returns a function turning its reply into the reply `_run`
        would give. Raw EVALSHA (a Script on a pipeline costs a SCRIPT EXISTS round trip per
        execute); a NOSCRIPT reply reruns the call through `_run`, which loads the script, so
        the pipeline must not be a MULTI whose other commands depend on this one."""
        argv = self._argv(args, seed, ttl_ms)
        pipe.evalsha(self._scripts[name].sha, _NKEYS, *argv)

        def read(reply):
            if isinstance(reply, NoScriptError):
                return self._call(name, argv)
            if isinstance(reply, Exception):
                raise reply
            return reply

        return read

    # -- leases -----------------------------------------------------------------
    def acquire(self, generation_id: str, *, account: str | None = None, known: bool = False,
                wait: bool = True, front: bool = False, require: str | None = None,
                priority: int = DEFAULT_PRIORITY, tenant: str | None = None, operation: str | None = None,
                seed: int | None = None) -> AcquireResult:
        """Admit the generation to a random eligible account with room (or to
        `account` when pinned), else queue it in the line of its `priority` (0..9) and
        `tenant` (`front`: at the head, for one coming back to the line); with wait=False
        refuse instead (`NoCapacity`, carrying `.admitted` made by the pump meanwhile).
        `require`: a key of this provider that must exist, else `NotFound` and nothing changes."""
        args = self._acquire_args(generation_id, account, known, wait, front, require, priority, tenant, operation)
        return self._acquired(self._run("acquire", *args, seed=seed), account)

    def acquire_in(self, pipe, generation_id: str, *, account: str | None = None, known: bool = False,
                   wait: bool = True, front: bool = False, require: str | None = None,
                   priority: int = DEFAULT_PRIORITY, tenant: str | None = None, operation: str | None = None,
                   seed: int | None = None):
        """`acquire` queued on a pipeline; returns a function of its reply giving what
        `acquire` returns (or raising what it raises)."""
        args = self._acquire_args(generation_id, account, known, wait, front, require, priority, tenant, operation)
        read = self._queue(pipe, "acquire", *args, seed=seed)
        return lambda reply: self._acquired(read(reply), account)

    def _acquire_args(self, generation_id, account, known, wait, front, require, priority, tenant,
                      operation) -> tuple:
        _check_id("generation_id", generation_id)
        check_priority(priority)
        check_tenant(tenant)
        if account is not None:
            _check_id("account", account)
        if require is not None and not require.startswith(keys.tag(self.provider) + ":"):
            raise ValidationError(f"require must be a key of {self.provider} (same hash tag), got {require!r}")
        flag = {True: "1", False: "0"}
        return (generation_id, account or "", flag[bool(wait)], flag[bool(known)], flag[bool(front)],
                require or "", str(self.max_waiting), str(priority), tenant or "", operation or "")

    def _acquired(self, reply, account) -> AcquireResult:
        status, detail = _s(reply[0]), reply[1]
        admitted = tuple(_admissions(reply[2:]))
        if status == "admitted":
            return AcquireResult("admitted", _s(detail), None, admitted)
        if status == "waiting":
            return AcquireResult("waiting", None, int(detail), admitted)
        if status == "unknown":
            raise NotFound(f"Account {account} is not configured")
        if status == "full":
            error = NoCapacity(f"The waiting line of {self.provider} is full ({int(detail)} generations wait, "
                               f"at most {self.max_waiting}); nothing was queued. Retry later.",
                               retry_after=FULL_RETRY_AFTER)
            error.admitted = admitted
            raise error
        raise self._busy_error(account, detail, admitted)

    def _busy_error(self, account, flat, admitted) -> NoCapacity:
        accounts, parts = {}, []
        for i in range(0, len(flat), 4):
            a, max_jobs, used, eligible = _s(flat[i]), int(flat[i + 1]), int(flat[i + 2]), int(flat[i + 3])
            accounts[a] = {
                "maxJobs": max_jobs,
                "executing": used,
                "available": max(0, max_jobs - used) if eligible else 0,
            }
            parts.append(f"{a} {used}/{max_jobs}" + ("" if eligible else " (unavailable)"))
        if account is not None:
            message = f"Account {account} is busy: {parts[0].split(' ', 1)[1]}"
        elif parts:
            message = "All accounts are busy: " + ", ".join(parts)
        else:
            message = f"No account of {self.provider} is configured"
        error = NoCapacity(message, accounts=accounts)
        error.admitted = admitted  # the pump may have admitted earlier waiters: enqueue them
        return error

    def release(self, generation_id: str, *, seed: int | None = None) -> list[Admission]:
        """Give the slot back (idempotent) and pump; returns the admissions made."""
        reply = self._run("release", _check_id("generation_id", generation_id), seed=seed)
        return _admissions(reply[1:])

    def release_in(self, pipe, generation_id: str, *, seed: int | None = None, claim_ttl: int = 0):
        """`release` queued on a pipeline; returns a function of its reply giving the admissions.

        `claim_ttl` > 0: the caller will run the first admitted waiter's start job itself (its
        Admission's `claimed`); the job's hash expires after that many seconds unless the
        caller records the outcome (see workers/chain.py)."""
        args = (_check_id("generation_id", generation_id),)
        if claim_ttl:
            args += (_check_int("claim_ttl", claim_ttl),)
        read = self._queue(pipe, "release", *args, seed=seed)
        return lambda reply: _admissions(read(reply)[1:])

    def renew(self, generation_id: str, *, ttl_ms: int | None = None) -> bool:
        """Push the lease deadline to now + ttl_ms; False when it holds no lease.
        ttl_ms <= 0 makes the lease expired at once (the next reap releases it)."""
        ttl = self.lease_ttl_ms if ttl_ms is None else _check_int("ttl_ms", ttl_ms)
        return bool(self._run("renew", _check_id("generation_id", generation_id), seed=0, ttl_ms=ttl))

    def renew_in(self, pipe, generation_id: str, *, ttl_ms: int | None = None):
        """`renew` queued on a pipeline; returns a function of its reply giving `renew`'s answer."""
        ttl = self.lease_ttl_ms if ttl_ms is None else _check_int("ttl_ms", ttl_ms)
        read = self._queue(pipe, "renew", _check_id("generation_id", generation_id), seed=0, ttl_ms=ttl)
        return lambda reply: bool(read(reply))

    def expired(self, limit: int = 100) -> list[str]:
        """Generations whose lease deadline <= now (Redis TIME); changes nothing."""
        return [_s(g) for g in self._run("expired", _check_int("limit", limit, minimum=0), seed=0)]

    def reap(self, *, limit: int = 100, seed: int | None = None) -> tuple[list[str], list[Admission]]:
        """Release up to `limit` expired leases, then pump: (reaped, admissions)."""
        due, flat = self._run("reap", _check_int("limit", limit, minimum=0), seed=seed)
        return [_s(g) for g in due], _admissions(flat)

    def pump(self, *, seed: int | None = None) -> list[Admission]:
        return _admissions(self._run("pump", seed=seed))

    # -- accounts ---------------------------------------------------------------
    def _configure(self, op: str, account: str, value="", *extra, seed=None) -> tuple[list[str], list[Admission]]:
        flat, failed = self._run("configure", op, _check_id("account", account), value, *extra, seed=seed)
        return [_s(g) for g in failed], _admissions(flat)

    def set_account(self, account: str, max_jobs: int, *, seed: int | None = None) -> list[Admission]:
        """Add the account or change its maxJobs (running leases are kept)."""
        return self._configure("max", account, _check_int("max_jobs", max_jobs, minimum=0), seed=seed)[1]

    def disable_account(self, account: str) -> None:
        """Error flag: out of rotation; its pinned line keeps waiting."""
        self._configure("disable", account, seed=0)

    def remove_account(self, account: str, *, seed: int | None = None) -> tuple[list[str], list[Admission]]:
        """Delete the account: returns (its pinned waiters, to fail; admissions)."""
        return self._configure("remove", account, seed=seed)

    def set_cooldown(self, account: str, until_ms: int | None, *, seed: int | None = None) -> list[Admission]:
        value = "" if until_ms is None else _check_int("until_ms", until_ms)
        return self._configure("cooldown", account, value, seed=seed)[1]

    def set_pace(self, account: str, per_minute: int | None = None, per_day: int | None = None, *,
                 seed: int | None = None) -> list[Admission]:
        """At most `per_minute` admissions to the account in any 60 s and `per_day` in any 24 h
        (None: no limit). An account whose window is full is ineligible until it moves."""
        for kind, n in (("per_minute", per_minute), ("per_day", per_day)):
            if n is not None:
                _check_int(kind, n, minimum=1)
        value = f"{per_minute or ''},{per_day or ''}"
        return self._configure("pace", account, value, seed=seed)[1]

    def quarantine(self, account: str, operation: str, until_ms: int | None, *,
                   seed: int | None = None) -> list[Admission]:
        """Keep the account from generations of `operation` until `until_ms` (None: clear it);
        it keeps serving every other operation."""
        value = "" if until_ms is None else _check_int("until_ms", until_ms)
        return self._configure("quarantine", account, value, _check_id("operation", operation), seed=seed)[1]

    def quarantines(self) -> dict[str, dict[str, int]]:
        """{account: {operation: until ms}} of the quarantines still running (Redis TIME)."""
        return quarantine_table(self.client, self.provider)

    def pace(self, account: str) -> dict:
        """The account's pacing: limits, admissions in its current windows, when each frees a start."""
        return pace_views(self.client, self.provider, account).get(account) or no_pace()

    def paces(self) -> dict[str, dict]:
        """`pace` of every paced account, by id (two round trips)."""
        return pace_views(self.client, self.provider)

    def set_usable_until(self, account: str, until_ms: int | None, *, seed: int | None = None) -> list[Admission]:
        value = "" if until_ms is None else _check_int("until_ms", until_ms)
        return self._configure("usable", account, value, seed=seed)[1]

    # -- waiting lines ----------------------------------------------------------
    def cancel_waiting(self, generation_id: str, account: str | None = None, *,
                       priority: int = DEFAULT_PRIORITY, tenant: str | None = None) -> bool:
        """Remove a waiter from its common line (that of its priority and tenant) and from
        `account`'s pinned line."""
        _check_id("generation_id", generation_id)
        return bool(self._run("cancel", generation_id, account or "", line_name(priority, tenant), seed=0))

    def position(self, generation_id: str, account: str | None = None, *,
                 priority: int = DEFAULT_PRIORITY, tenant: str | None = None) -> int | None:
        """1-based place in its common line (or in `account`'s pinned line)."""
        name = line_name(priority, tenant)
        common = keys.waiting(self.provider) if not name else keys.line(self.provider, name)
        line = keys.pinned(self.provider, account) if account else common
        found = self.client.lpos(line, generation_id)
        return None if found is None else int(found) + 1

    # -- reading ----------------------------------------------------------------
    def holder(self, generation_id: str) -> str | None:
        found = self.client.hget(keys.holder(self.provider), generation_id)
        return None if found is None else _s(found)

    # -- policy -----------------------------------------------------------------
    def set_policy(self, *, aging_ms: int = DEFAULT_AGING_MS, weights: dict[str, int] | None = None,
                   caps: dict[str, int] | None = None, seed: int | None = None) -> list[Admission]:
        """Priorities and tenants: a waiting generation gains one priority level per `aging_ms`
        (0: never; 60 s when no policy was ever set); tenants share admissions at equal priority by `weights` (default 1 each);
        a tenant in `caps` holds at most that many slots. Replaces the previous policy, then
        pumps (a raised cap can admit at once). Every process of a deployment should set the same."""
        fields = {"aging_ms": _check_int("aging_ms", aging_ms, minimum=0)}
        for name, value in (weights or {}).items():
            fields[f"w:{check_tenant(name)}"] = _check_int(f"weight of {name}", value, minimum=1)
        for name, value in (caps or {}).items():
            fields[f"c:{check_tenant(name)}"] = _check_int(f"cap of {name}", value, minimum=0)
        if fields == {"aging_ms": DEFAULT_AGING_MS}:  # the default policy is stored as no policy
            fields = {}
        # one script: the hash replaced, parked sub-lines unparked, a pump (a raised cap can admit at once)
        flat, _ = self._run("configure", "policy", "", "", *(x for kv in fields.items() for x in kv), seed=seed)
        return _admissions(flat)

    def snapshot(self) -> dict:
        now, cap, used, cool, usable, waiting, pinned, common, tenants = self._run("snapshot", seed=0)
        cap = {_s(a): int(v) for a, v in _pairs(cap)}
        used = {_s(a): int(v) for a, v in _pairs(used)}
        cool = {_s(a): int(v) for a, v in _pairs(cool)}
        usable = {_s(a): int(v) for a, v in _pairs(usable)}
        now = int(now)
        accounts = {}
        for a in sorted(set(cap) | set(used)):
            eligible = (a in cap and (a not in cool or cool[a] <= now) and (a not in usable or usable[a] > now))
            max_jobs, executing = cap.get(a, 0), used.get(a, 0)
            accounts[a] = {
                "maxJobs": max_jobs,
                "executing": executing,
                "available": max(0, max_jobs - executing) if eligible else 0,
                "eligible": eligible,
                "cooldown_until": cool.get(a),
                "usable_until": usable.get(a),
            }
        return {
            "accounts": accounts,
            "waiting": int(waiting),
            "pinned": {_s(a): int(n) for a, n in _pairs(pinned)},
            "lines": {_s(n): int(c) for n, c in _pairs(common)},  # "<priority>:<tenant>" -> waiting
            "tenants": {_s(t): int(c) for t, c in _pairs(tenants)},  # tenant -> slots held
        }

    def running(self) -> list[dict]:
        flat = self._run("running", seed=0)
        rows = [
            {
                "generation_id": _s(flat[i]),
                "account": _s(flat[i + 1]),
                "started_ms": int(flat[i + 2]),
                "deadline_ms": int(float(flat[i + 3])),
            }
            for i in range(0, len(flat), 4)
        ]
        rows.sort(key=lambda row: (row["started_ms"], row["generation_id"]))
        return rows
