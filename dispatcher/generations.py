"""Generation records: a small state machine persisted in Redis.

    waiting → admitted → submitted → completed | failed | canceled

A record lives in `dsp:{provider}:gen:<id>`; its id carries the provider
(`runwayml-<hex>`), so any process finds the record from the id alone.
Moves go through `transition.lua`, so concurrent steps cannot both win.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis.exceptions import NoScriptError

from . import keys, lua
from .destinations import Refused, check_reply_url
from .errors import NotFound, ValidationError

WAITING, ADMITTED, SUBMITTED = "waiting", "admitted", "submitted"
COMPLETED, FAILED, CANCELED = "completed", "failed", "canceled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
LIVE = frozenset({WAITING, ADMITTED, SUBMITTED})


def new_id(provider: str) -> str:
    return f"{provider}-{uuid.uuid4().hex}"


# useapi-style public ids (the provider-shaped endpoints answer these), e.g.
#   user:dispatcher-runwayml:jane@example.com-task:<32 hex>   (pinned to an account)
#   user:dispatcher-minimax-video:<32 hex>                     (any account)
# They are an alias of the internal id `<provider>-<32 hex>`: no lookup, the same
# record and keys. The account (only known at create when pinned) is embedded as is
# when it is URL-path safe, else as `~` + base64url, so ids never hold `,` `/` `%`.
_SAFE_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
_PUBLIC = re.compile(r"user:dispatcher-(?P<provider>[a-z0-9]+)(?::(?P<account>[A-Za-z0-9_.@+~-]+?))?"
                     r"-(?P<kind>[a-z]+):(?P<hex>[0-9a-f]{32})")


def encode_account(account: str) -> str:
    if _SAFE_ACCOUNT.fullmatch(account):
        return account
    return "~" + base64.urlsafe_b64encode(account.encode()).decode().rstrip("=")


def decode_account(text: str) -> str:
    if not text.startswith("~"):
        return text
    raw = text[1:]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()


def public_id(generation_id: str, kind: str, account: str | None = None) -> str:
    """The useapi-style alias of an internal generation id."""
    provider = provider_of(generation_id)
    hexpart = generation_id.rpartition("-")[2]
    where = f":{encode_account(account)}" if account else ""
    return f"user:dispatcher-{provider}{where}-{kind}:{hexpart}"


def internal_id(job_id: str) -> str:
    """Map a public (useapi-style) id to the internal id; any other string is returned unchanged."""
    found = _PUBLIC.fullmatch(job_id) if isinstance(job_id, str) else None
    return f"{found['provider']}-{found['hex']}" if found else job_id


def provider_of(generation_id: str) -> str:
    provider, sep, rest = generation_id.partition("-")
    if not sep or not provider or len(rest) != 32 or not all(c in "0123456789abcdef" for c in rest):
        raise NotFound(f"Job {generation_id!r} not found")
    return provider


@dataclass
class Generation:
    id: str
    provider: str
    operation: str
    payload: dict
    state: str
    created: float
    account: str | None = None
    pinned: str | None = None
    upstream_id: str | None = None
    admitted_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    error_code: int | None = None
    reply_url: str | None = None
    reply_ref: str | None = None
    polls: int = 0
    retries: int = 0
    step: str | None = None  # id of the one step job allowed to act on this generation
    parked: str | None = None  # its start job, written but on no queue until admission enqueues it
    maybe_on: str | None = None  # account whose create answered ambiguously (it may hold the job)
    due: float | None = None  # when that step is meant to run (epoch s): a poll's backoff, for lag
    priority: int = 5  # 0 (lowest) .. 9 (highest): its place among waiters (dispatcher.capacity.policy)
    tenant: str | None = None  # whose work it is: tenants take turns at equal priority
    extra: dict = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict:
        return {
            "id": self.id, "status": self.state, "provider": self.provider, "operation": self.operation,
            "account": self.account, "pinned": self.pinned, "upstreamId": self.upstream_id,
            "created": self.created, "admitted": self.admitted_at, "submitted": self.submitted_at,
            "finished": self.finished_at, "progress": self.progress, "result": self.result,
            "error": self.error, "code": self.error_code, "replyRef": self.reply_ref,
            "priority": self.priority, "tenant": self.tenant,
        }


_FLOATS = ("created", "admitted_at", "submitted_at", "finished_at", "progress", "due")
_INTS = ("polls", "retries", "error_code", "priority")
_JSON = ("payload", "result", "extra")


def _encode(values: dict) -> dict:
    out = {}
    for k, v in values.items():
        if v is None:
            out[k] = ""
        elif k in _JSON:
            out[k] = json.dumps(v, separators=(",", ":"))
        else:
            out[k] = v
    return out


def _flat_dict(flat) -> dict:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _decode(raw: dict) -> Generation:
    values: dict = {}
    for k, v in raw.items():
        if k not in Generation.__dataclass_fields__:
            continue
        if v == "":
            values[k] = None
        elif k in _JSON:
            values[k] = json.loads(v)
        elif k in _FLOATS:
            values[k] = float(v)
        elif k in _INTS:
            values[k] = int(v)
        else:
            values[k] = v
    values.setdefault("payload", {})
    if values.get("progress") is None:
        values["progress"] = 0.0
    for k in ("polls", "retries"):
        if values.get(k) is None:
            values[k] = 0
    return Generation(**values)


class GenerationStore:
    def __init__(self, client, *, result_ttl: int, failure_ttl: int):
        self.r = client
        self.result_ttl = result_ttl
        self.failure_ttl = failure_ttl
        self._transition = lua.register(client, "transition")
        self._with_account = lua.register(client, "with_account")

    def create_in(self, pipe, gen: Generation):
        """`create` queued on a pipeline; returns a function of its reply (raises its error)."""
        values = {k: getattr(gen, k) for k in Generation.__dataclass_fields__}
        pipe.hset(keys.generation(gen.provider, gen.id), mapping=_encode(values))
        return _raise_error

    def get(self, generation_id: str) -> Generation:
        gen = self.find(generation_id)
        if gen is None:
            raise NotFound(f"Job {generation_id} not found")
        return gen

    def find(self, generation_id: str) -> Generation | None:
        generation_id = internal_id(generation_id)
        try:
            provider = provider_of(generation_id)
        except NotFound:
            return None
        raw = self.r.hgetall(keys.generation(provider, generation_id))
        return _decode(raw) if raw else None

    def find_with_account_in(self, pipe, generation_id: str):
        """`find` plus the raw record of the account the generation holds, in one call
        (`with_account.lua`) on a pipeline; returns a function of its reply giving
        (Generation or None, the account's fields as a dict, empty when none)."""
        generation_id = internal_id(generation_id)
        try:
            provider = provider_of(generation_id)
        except NotFound:
            return lambda reply: (None, {})
        key, prefix = keys.generation(provider, generation_id), keys.account(provider, "")
        pipe.evalsha(self._with_account.sha, 1, key, prefix)

        def found(reply):
            if isinstance(reply, NoScriptError):
                reply = self._with_account(keys=[key], args=[prefix])
            record, account = _raise_error(reply)
            return (_decode(_flat_dict(record)) if record else None), _flat_dict(account)

        return found

    def many(self, generation_ids: list[str]) -> list[Generation | None]:
        pipe = self.r.pipeline(transaction=False)
        for gid in generation_ids:
            pipe.hgetall(keys.generation(provider_of(gid), gid))
        return [_decode(raw) if raw else None for raw in pipe.execute()]

    def update(self, gen_id: str, **values) -> None:
        self.r.hset(keys.generation(provider_of(gen_id), gen_id), mapping=_encode(values))

    def incr(self, gen_id: str, name: str) -> int:
        return int(self.r.hincrby(keys.generation(provider_of(gen_id), gen_id), name, 1))

    def move(self, gen_id: str, allowed: frozenset[str] | set[str] | tuple, to: str, **values) -> bool:
        """Move a record to `to` if it is in one of `allowed`; write `values` with it."""
        key, args = self._move_args(gen_id, allowed, to, values)
        moved, _ = self._transition(keys=[key], args=args)
        return bool(int(moved))

    def move_in(self, pipe, gen_id: str, allowed, to: str, **values):
        """Queue `move` on a pipeline (any client of the same Redis: ours or RQ's), so it
        shares the round trip of other commands; returns a function of its reply giving
        `moved`. Raw EVALSHA: a redis-py Script on a pipeline costs a SCRIPT EXISTS round
        trip per execute. A NOSCRIPT reply (Redis lost its script cache) reruns the move
        through the loading path, so the pipeline must not be a MULTI whose other
        commands depend on the move having happened."""
        key, args = self._move_args(gen_id, allowed, to, values)
        pipe.evalsha(self._transition.sha, 1, key, *args)

        def moved(reply) -> bool:
            if isinstance(reply, NoScriptError):
                reply = self._transition(keys=[key], args=args)
            return bool(int(_raise_error(reply)[0]))

        return moved

    def _move_args(self, gen_id, allowed, to, values) -> tuple[str, list]:
        ttl = 0
        if to in TERMINAL:
            values.setdefault("finished_at", time.time())
            ttl = self.result_ttl if to == COMPLETED else self.failure_ttl
        flat: list = []
        for k, v in _encode(values).items():
            flat += [k, v]
        return keys.generation(provider_of(gen_id), gen_id), [",".join(sorted(allowed)), to, ttl, *flat]


def _raise_error(reply):
    """A pipeline run with raise_on_error=False hands errors back as replies."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def validate_reply(reply_url, reply_ref, allow: tuple[str, ...] = ()) -> None:
    """Check a replyUrl and replyRef at submit. `allow`: the settings' `callback_allow`; any other
    internal destination (loopback, private, link-local…, see `destinations`) is refused."""
    if reply_url is not None:
        if not isinstance(reply_url, str) or not reply_url.startswith(("http://", "https://")):
            raise ValidationError("replyUrl must be an http(s) URL")
        if len(reply_url) > 1024:
            raise ValidationError("replyUrl is too long")
        if not _has_host(reply_url) or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in reply_url):
            raise ValidationError("replyUrl must be an http(s) URL with a host and no spaces or control characters")
        try:
            check_reply_url(reply_url, allow)
        except Refused as exc:
            raise ValidationError(str(exc)) from None
    if reply_ref is not None:
        if not isinstance(reply_ref, str):
            raise ValidationError("replyRef must be a string")
        if len(reply_ref) > 1024:
            raise ValidationError("replyRef is too long")


def _has_host(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return False
    return bool(parts.hostname)
