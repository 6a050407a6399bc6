"""Generation records: a small state machine persisted in Redis.

    waiting → admitted → submitted → completed | failed | canceled

A record lives in `dsp:{provider}:gen:<id>`; its id carries the provider
(`runwayml-<hex>`), so any process finds the record from the id alone.
Moves go through `transition.lua`, so concurrent steps cannot both win.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from . import keys, lua
from .errors import NotFound, ValidationError

WAITING, ADMITTED, SUBMITTED = "waiting", "admitted", "submitted"
COMPLETED, FAILED, CANCELED = "completed", "failed", "canceled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
LIVE = frozenset({WAITING, ADMITTED, SUBMITTED})


def new_id(provider: str) -> str:
    return f"{provider}-{uuid.uuid4().hex}"


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
        }


_FLOATS = ("created", "admitted_at", "submitted_at", "finished_at", "progress")
_INTS = ("polls", "retries", "error_code")
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

    def create(self, gen: Generation) -> None:
        values = {k: getattr(gen, k) for k in Generation.__dataclass_fields__}
        self.r.hset(keys.generation(gen.provider, gen.id), mapping=_encode(values))

    def discard(self, gen: Generation) -> None:
        self.r.delete(keys.generation(gen.provider, gen.id))

    def get(self, generation_id: str) -> Generation:
        gen = self.find(generation_id)
        if gen is None:
            raise NotFound(f"Job {generation_id} not found")
        return gen

    def find(self, generation_id: str) -> Generation | None:
        try:
            provider = provider_of(generation_id)
        except NotFound:
            return None
        raw = self.r.hgetall(keys.generation(provider, generation_id))
        return _decode(raw) if raw else None

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
        ttl = 0
        if to in TERMINAL:
            values.setdefault("finished_at", time.time())
            ttl = self.result_ttl if to == COMPLETED else self.failure_ttl
        flat: list = []
        for k, v in _encode(values).items():
            flat += [k, v]
        moved, _ = self._transition(
            keys=[keys.generation(provider_of(gen_id), gen_id)],
            args=[",".join(sorted(allowed)), to, ttl, *flat],
        )
        return bool(moved)


def validate_reply(reply_url, reply_ref) -> None:
    if reply_url is not None:
        if not isinstance(reply_url, str) or not reply_url.startswith(("http://", "https://")):
            raise ValidationError("replyUrl must be an http(s) URL")
        if len(reply_url) > 1024:
            raise ValidationError("replyUrl is too long")
    if reply_ref is not None:
        if not isinstance(reply_ref, str):
            raise ValidationError("replyRef must be a string")
        if len(reply_ref) > 1024:
            raise ValidationError("replyRef is too long")
