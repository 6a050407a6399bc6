"""Every Redis key name, derived in one place.

All keys of one provider share the hash tag `{provider}`, so each capacity
script touches a single cluster slot and runs unchanged on Redis Cluster.
"""

from __future__ import annotations

ROOT = "dsp"


def tag(provider: str) -> str:
    return f"{ROOT}:{{{provider}}}"


# -- accounts -----------------------------------------------------------------
def account(provider: str, account_id: str) -> str:
    """hash: config, encrypted secrets, JWT, status, error."""
    return f"{tag(provider)}:acct:{account_id}"


def accounts(provider: str) -> str:
    """set: ids of every configured account of the provider."""
    return f"{tag(provider)}:accounts"


# -- capacity -----------------------------------------------------------------
def cap(provider: str) -> str:
    """hash: account -> maxJobs, for accounts without an error flag."""
    return f"{tag(provider)}:cap"


def used(provider: str) -> str:
    """hash: account -> leases held."""
    return f"{tag(provider)}:used"


def leases(provider: str) -> str:
    """zset: generation -> lease deadline (ms, Redis TIME)."""
    return f"{tag(provider)}:leases"


def holder(provider: str) -> str:
    """hash: generation -> account holding its slot."""
    return f"{tag(provider)}:holder"


def cooldown(provider: str) -> str:
    """hash: account -> ms until which it is ineligible (cooldown)."""
    return f"{tag(provider)}:cooldown"


def usable_until(provider: str) -> str:
    """hash: account -> ms after which it is ineligible (token expiry minus margin)."""
    return f"{tag(provider)}:usable"


def waiting(provider: str) -> str:
    """list: FIFO of generation ids waiting for any account."""
    return f"{tag(provider)}:waiting"


def pinned(provider: str, account_id: str) -> str:
    """list: FIFO of generation ids waiting for one account."""
    return f"{tag(provider)}:pinned:{account_id}"


def lines(provider: str) -> str:
    """set: names "<priority>:<tenant>" of the non-empty common sub-lines (besides `waiting`)."""
    return f"{tag(provider)}:lines"


def parked_lines(provider: str) -> str:
    """set: the common sub-lines set aside while their tenant is at its cap (a subset of `lines`;
    capacity/scripts/_pump.lua parks and unparks them)."""
    return f"{tag(provider)}:plines"


def line(provider: str, name: str) -> str:
    """list: the common sub-line `name` ("<priority>:<tenant>")."""
    return f"{tag(provider)}:line:{name}"


def enqueued(provider: str) -> str:
    """hash: waiting generation -> ms it joined its line (for aging)."""
    return f"{tag(provider)}:enq"


def generation_tenant(provider: str) -> str:
    """hash: generation -> its tenant (those with one, waiting or holding a slot)."""
    return f"{tag(provider)}:gten"


def tenant_slots(provider: str) -> str:
    """hash: tenant -> slots its generations hold."""
    return f"{tag(provider)}:trun"


def tenant_pass(provider: str) -> str:
    """hash: tenant -> pass of the weighted round robin; '~vt' -> the virtual time."""
    return f"{tag(provider)}:tpass"


def policy(provider: str) -> str:
    """hash: the admission policy the capacity scripts read (aging_ms, w:<tenant>, c:<tenant>)."""
    return f"{tag(provider)}:policy"


def pace(provider: str) -> str:
    """hash: m:<account> / d:<account> -> admissions allowed in any 60 s / 24 h."""
    return f"{tag(provider)}:pace"


def starts(provider: str, account_id: str) -> str:
    """zset: generation -> ms it was admitted to the account (paced accounts; 24 h kept)."""
    return f"{tag(provider)}:starts:{account_id}"


def quarantine(provider: str) -> str:
    """hash: "<account>\t<operation>" -> ms until which the account takes none of that operation."""
    return f"{tag(provider)}:quar"


def generation_operation(provider: str) -> str:
    """hash: waiting generation -> its operation (for quarantines)."""
    return f"{tag(provider)}:gop"


def operation_failures(provider: str, account_id: str, operation: str) -> str:
    """string (counter, expiring): refusals and failures of one operation on one account."""
    return f"{tag(provider)}:opfail:{account_id}\t{operation}"


def pinned_lines(provider: str) -> str:
    """set: accounts that have a non-empty pinned line."""
    return f"{tag(provider)}:pinned_lines"


def started(provider: str) -> str:
    """hash: generation -> ms its lease was first taken (scheduler view)."""
    return f"{tag(provider)}:started"


def failures(provider: str, account_id: str) -> str:
    """zset: recent upstream call outcomes of one account (failure-rate cooldown)."""
    return f"{tag(provider)}:failures:{account_id}"


# -- generations --------------------------------------------------------------
def generation(provider: str, generation_id: str) -> str:
    """hash: the generation record."""
    return f"{tag(provider)}:gen:{generation_id}"


def due(provider: str) -> str:
    """zset: generation -> ms its next poll is due (workers/polls.py); a claimed one is pushed
    ahead by the claim, so a batch that dies hands it back once the claim runs out."""
    return f"{tag(provider)}:due"


# -- workers and maintenance --------------------------------------------------
def maintenance_lock() -> str:
    return f"{ROOT}:maintenance:lock"


def refresh_lock(provider: str, account_id: str) -> str:
    return f"{tag(provider)}:refresh:{account_id}"


def providers_seen() -> str:
    """set: providers with at least one account (so maintenance knows where to look)."""
    return f"{ROOT}:providers"


def useapi_sync(provider: str) -> str:
    """Set (with a TTL of `useapi_sync` seconds) by the process that last read the provider's accounts at useapi."""
    return f"{ROOT}:{tag(provider)}:useapi-sync"
