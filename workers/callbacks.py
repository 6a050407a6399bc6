"""`replyUrl` callbacks: POST the generation, signed, retried by RQ with backoff.

Runs as its own RQ job, on its own queue served by its own worker process (workers/pool.py), after
the slot was released: a slow, failing or hostile receiver never delays a generation's steps.

Each delivery is bounded whatever the receiver does:
- one deadline (`DISPATCHER_CALLBACK_DEADLINE`) for all of it: resolving, connecting, TLS, sending,
  reading; every socket operation gets at most what is left of it (dispatcher/destinations.py);
- the answer's status line and headers are read, then at most ANSWER_BYTES of its body, raw (never
  decompressed: `Accept-Encoding: identity`, and `iter_raw` even when the receiver compresses);
- the destination is checked when connecting (DNS rebinding, internal addresses), and only the
  checked address is connected to; a refused destination is not retried.

A delivery holds a lock (`…:callback:<generation id>`) that outlives its deadline, and a delivered
callback leaves `done` there: a callback is never sent twice at once, and never again once a
receiver accepted it (maintenance re-enqueues the job of a worker that died mid-delivery).

Signatures (README, "Webhooks"): `Dispatcher-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`, checked with `verify`; the legacy `X-Dispatcher-Signature: sha256=<hex HMAC of the
body>` is still sent for existing receivers (it carries no time, so it cannot stop replays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import hmac
import json
import time
import uuid

import httpcore
import httpx
import redis
from rq import get_current_job

from dispatcher import keys
from dispatcher import logging as dlog
from dispatcher.destinations import GuardedTransport, Refused, parse_allow

from .context import dispatcher

if TYPE_CHECKING:
    from dispatcher.core import Core

log = dlog.get_logger()
SIGNATURE_HEADER = "Dispatcher-Signature"  # t=<unix>,v1=<hex>: timestamped, see `verify`
LEGACY_SIGNATURE_HEADER = "X-Dispatcher-Signature"  # sha256=<hex of the body>: no timestamp (deprecated)
ANSWER_BYTES = 4096  # at most this much of a receiver's answer body is read (raw)
GRACE = 5.0  # seconds a delivery's lock outlives its deadline (Redis round trips before and after)
DONE_TTL = 24 * 3600  # seconds a delivered callback's `done` mark is kept
DONE = "done"
NETWORK_ERRORS = (httpx.HTTPError, httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                  httpcore.UnsupportedProtocol, OSError)


def sign(secret: str, body: bytes) -> str:
    """The legacy `X-Dispatcher-Signature` value: an HMAC of the body alone (replayable)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_v1(secret: str, body: bytes, timestamp: int) -> str:
    """The `Dispatcher-Signature` value: `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300, now: float | None = None) -> bool:
    """Check a `Dispatcher-Signature` header against the raw body, as a receiver does (stdlib only:
    copy it). True when one `v1` matches and `t` is within `tolerance` seconds of now. A replay of a
    captured delivery fails once `tolerance` has passed; within it, skip a `v1` value already seen."""
    try:
        fields = [part.strip().split("=", 1) for part in header.split(",")]
        timestamp = int(next(value for name, value in fields if name == "t"))
        macs = [value for name, value in fields if name == "v1"]
    except (ValueError, StopIteration):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, mac) for mac in macs)


def lock_key(generation_id: str) -> str:
    """string: the delivery in flight (a random token, expiring) or `done` once delivered."""
    provider = generation_id.partition("-")[0]
    return f"{keys.tag(provider)}:callback:{generation_id}"


class DeliveryInFlight(RuntimeError):
    """Another delivery of this callback holds its lock: RQ retries this one later."""


def post(url: str, body: bytes, headers: dict, *, allow=(), deadline: float = 10.0,
         ssl_context=None) -> tuple[int, bytes]:
    """POST `body` to `url` within `deadline` seconds in all; returns (status, at most ANSWER_BYTES
    of the raw answer body, read only for a status that is not 2xx). Raises Refused for a
    destination the policy refuses, a NETWORK_ERRORS error otherwise. `ssl_context`: the default
    verifying one unless given (tests trust their own certificate)."""
    until = time.monotonic() + deadline
    sent = {**headers, "Accept-Encoding": "identity", "Connection": "close"}
    transport = GuardedTransport(parse_allow(tuple(allow)), until, ssl_context)
    with httpx.Client(transport=transport, timeout=deadline, follow_redirects=False, trust_env=False) as client:
        with client.stream("POST", url, content=body, headers=sent) as response:
            return response.status_code, b"" if response.is_success else _head(response)


def _head(response: httpx.Response) -> bytes:
    """Up to ANSWER_BYTES of the raw body; what the deadline leaves time for."""
    got = bytearray()
    try:
        for chunk in response.iter_raw():
            got += chunk[:ANSWER_BYTES - len(got)]
            if len(got) >= ANSWER_BYTES:
                break
    except NETWORK_ERRORS:
        pass  # the status decides; the body is only shown in the log
    return bytes(got)


def _claim(d: Core, generation_id: str, deadline: float) -> str | None:
    """Take the delivery lock: a token when taken, DONE when already delivered, None when another
    delivery holds it."""
    token = uuid.uuid4().hex
    key = lock_key(generation_id)
    if d.r.set(key, token, nx=True, px=int((deadline + GRACE) * 1000)):
        return token
    return DONE if d.r.get(key) == DONE else None


def _release(d: Core, generation_id: str, token: str) -> None:
    """Drop the lock if it is still ours (a failed attempt: the retry takes it again)."""
    key = lock_key(generation_id)
    with d.r.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) == token:
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except redis.WatchError:
            pass


def _headers(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json", "User-Agent": "dispatcher-callbacks",
            SIGNATURE_HEADER: sign_v1(secret, body, int(time.time())),
            LEGACY_SIGNATURE_HEADER: sign(secret, body)}


def _attempt(d: Core, gen) -> str:
    """One delivery; returns "delivered" or raises (RQ retries, except for a refused destination)."""
    body = json.dumps(d.callback_body(gen), separators=(",", ":"), sort_keys=True).encode()
    settings = d.settings
    try:
        status, answer = post(gen.reply_url, body, _headers(d.callback_secret, body),
                              allow=settings.callback_allow, deadline=settings.callback_deadline)
    except Refused as exc:
        job = get_current_job()
        if job is not None:
            job.retries_left = 0  # the policy will refuse it again: fail now, no retries
        log.warning("callback destination refused", generation_id=gen.id, reason=str(exc))
        raise
    except NETWORK_ERRORS as exc:
        log.warning("callback failed", generation_id=gen.id, error=type(exc).__name__)
        raise RuntimeError(f"callback failed: {type(exc).__name__}") from None  # RQ retries with backoff
    if not 200 <= status < 300:
        log.warning("callback refused", generation_id=gen.id, status=status,
                    answer=answer[:200].decode("utf-8", "replace"))
        raise RuntimeError(f"callback answered {status}")  # RQ retries with backoff
    return "delivered"


def deliver(generation_id: str) -> str:
    d = dispatcher()
    gen = d.generations.find(generation_id)
    if gen is None or not gen.reply_url:
        return "nothing to send"
    token = _claim(d, generation_id, d.settings.callback_deadline)
    if token == DONE:
        return "already delivered"
    if token is None:
        raise DeliveryInFlight(f"a delivery of {generation_id} is in flight")
    try:
        outcome = _attempt(d, gen)
    except BaseException:
        _release(d, generation_id, token)
        raise
    d.r.set(lock_key(generation_id), DONE, ex=DONE_TTL)
    return outcome
