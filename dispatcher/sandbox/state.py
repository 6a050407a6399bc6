"""All mutable state of the simulated upstream and the rules applied to it.

Pure logic: no HTTP, no sleeping. Time comes from the injected `clock` (epoch seconds),
randomness from a seedable `random.Random`. Rejections are raised as `Reject` and turned
into provider-shaped HTTP errors by the route modules.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from collections import Counter, OrderedDict
from typing import Any, Callable

from . import jwt
from .model import (
    EMULATIONS,
    SECRET_FIELD,
    BadRequest,
    Job,
    User,
    canonical,
    identity,
    parse_options,
    prompt_text,
    provider_of,
    stable_number,
)

SUSPENDED = "This account has been suspended."
WRONG_LOGIN = "Wrong username/password combination."
FAULT_ORDER = ("401", "429", "412", "596", "5xx")
MAX_UPLOADS = 1000


class Reject(Exception):
    """An upstream refusal: HTTP status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = headers or {}


def seconds_header(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Sandbox:
    def __init__(self, clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        self.clock = clock
        self.secret = secrets.token_bytes(32)
        self.plugins: dict[str, Any] = {}  # emulations layered on this state (`useapi`): reset(), stats()
        self.reset(seed)

    # ------------------------------------------------------------------ admin
    def reset(self, seed: int | None = None) -> None:
        self.users: dict[tuple[str, str], User] = {}
        self.by_cookie: dict[str, User] = {}
        self.by_token: dict[str, User] = {}
        self.refresh_tokens: dict[str, list] = {}  # token -> [user, used]
        self.uploads: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self.counts: Counter = Counter()
        self.rng = random.Random(seed)
        self._seq = 0
        self._verified: dict[str, dict[str, Any]] = {}  # token -> claims (signature already checked)
        for plugin in self.plugins.values():
            plugin.reset()

    def upsert_user(self, body: Any) -> tuple[User, bool]:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        provider = provider_of(body)
        ident, secret = identity(provider, body)
        options = parse_options(body)
        user = self.users.get((provider, ident))
        self._check_credential(provider, secret, user)
        created = user is None
        if created:
            user = User(provider, ident, "", stable_number(provider, ident))
            self.users[(provider, ident)] = user
        self._apply(user, options, secret or None, new=created)
        return user, created

    def patch_user(self, provider: str, ident: str, body: Any) -> User:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        user = self.get_user(provider, ident)
        options = parse_options(body)
        field = SECRET_FIELD[user.provider]
        secret = body.get(field)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise BadRequest(f"{field} must be a non-empty string", f"invalid_{field}")
        self._check_credential(user.provider, secret, user)
        self._apply(user, options, secret, new=False)
        return user

    def _check_credential(self, provider: str, secret: str | None, user: User | None) -> None:
        index = {"minimax": self.by_token, "riffusion": self.by_cookie}.get(provider)
        other = index.get(secret) if index is not None and secret else None
        if other is not None and other is not user:
            raise BadRequest("this credential belongs to another account", "duplicate_credential")

    def _apply(self, user: User, options: dict[str, Any], secret: str | None, new: bool) -> None:
        old_secret = user.secret
        for name, value in options.items():
            setattr(user, name, value)
        now = self.clock()
        if user.provider == "minimax":
            if new and not secret:  # no pasted token given: mint one that looks like the real thing
                secret = jwt.mint({"sub": user.id, "iat": now, "exp": now + user.jwt_lifetime,
                                   "jti": uuid.uuid4().hex, "prv": "minimax"}, self.secret)
            if new or (secret and secret != old_secret) or "jwt_lifetime" in options:
                user.registered_at = now
                user.token_exp = now + user.jwt_lifetime
        if secret and secret != old_secret:
            index = {"minimax": self.by_token, "riffusion": self.by_cookie}.get(user.provider)
            if index is not None:
                if index.get(old_secret) is user:
                    del index[old_secret]
                index[secret] = user
            user.secret = secret

    def get_user(self, provider: str, ident: str) -> User:
        user = self.users.get((provider, ident))
        if user is None:
            raise KeyError(f"{provider}/{ident}")
        return user

    def expire_tokens(self, provider: str, ident: str) -> User:
        user = self.get_user(provider, ident)
        user.revoked |= user.issued
        user.issued = set()
        if provider == "minimax":
            user.token_exp = self.clock()
        return user

    def store_upload(self, data: bytes, content_type: str, ext: str) -> str:
        name = f"{uuid.uuid4()}.{ext}"
        self.uploads[name] = (data, content_type)
        while len(self.uploads) > MAX_UPLOADS:
            self.uploads.popitem(last=False)
        return name

    # ------------------------------------------------------------------ auth
    def mint(self, user: User, **extra: Any) -> tuple[str, dict[str, Any]]:
        now = self.clock()
        claims = {"sub": user.id, "iat": now, "exp": now + user.jwt_lifetime,
                  "jti": uuid.uuid4().hex, "prv": user.provider, **extra}
        user.issued.add(claims["jti"])
        return jwt.mint(claims, self.secret), claims

    def _count(self, user: User | None, name: str) -> None:
        self.counts[name] += 1
        if user is not None:
            user.counts[name] += 1

    def login_password(self, provider: str, email: Any, password: Any) -> User:
        user = self.users.get((provider, email)) if isinstance(email, str) else None
        if user is None or not isinstance(password, str) or password != user.secret:
            raise Reject(401, WRONG_LOGIN)
        if user.suspended:
            raise Reject(401, SUSPENDED)
        self._count(user, "logins")
        return user

    def login_cookie(self, cookie: Any) -> User:
        user = self.by_cookie.get(cookie) if isinstance(cookie, str) else None
        if user is None:
            raise Reject(401, "Invalid cookie")
        if user.suspended:
            raise Reject(401, SUSPENDED)
        self._count(user, "logins")
        return user

    def issue_refresh(self, user: User) -> str:
        token = secrets.token_urlsafe(24)
        self.refresh_tokens[token] = [user, False]
        return token

    def refresh(self, token: Any) -> User:
        entry = self.refresh_tokens.get(token) if isinstance(token, str) else None
        if entry is None or self.users.get((entry[0].provider, entry[0].id)) is not entry[0]:
            raise Reject(401, "Invalid Refresh Token: Refresh Token Not Found")
        user, used = entry
        if used:
            raise Reject(401, "Invalid Refresh Token: Already Used")
        if user.suspended:
            raise Reject(401, SUSPENDED)
        entry[1] = True
        self._count(user, "refreshes")
        return user

    def authenticate(self, provider: str, token: str | None) -> User:
        """The user behind a request's token, or Reject(401). Counts expired-token requests."""
        if not token:
            raise Reject(401, "Unauthorized")
        now = self.clock()
        if provider == "minimax":
            user = self.by_token.get(token)
            if user is None:
                raise Reject(401, "Invalid token")
            expired = user.token_exp <= now
        else:
            claims = self._verified.get(token)
            if claims is None:
                try:
                    claims = jwt.verify(token, self.secret)
                except jwt.InvalidToken:
                    raise Reject(401, "Invalid token") from None
                if len(self._verified) >= 50_000:
                    self._verified.clear()
                self._verified[token] = claims
            user = self.users.get((provider, claims.get("sub"))) if claims.get("prv") == provider else None
            if user is None:
                raise Reject(401, "Invalid token")
            exp = claims.get("exp")
            expired = not isinstance(exp, (int, float)) or exp <= now or claims.get("jti") in user.revoked
        if expired:
            self._count(user, "expired_token_requests")
            raise Reject(401, "Token has expired")
        if user.suspended:
            raise Reject(401, SUSPENDED)
        return user

    # ------------------------------------------------------------------ faults
    def draw_faults(self, user: User) -> tuple[float, str | None]:
        """(seconds to stall, fault kind to answer or None) for one create/poll request."""
        faults = user.faults
        if not faults:
            return 0.0, None
        rng = self.rng
        slow = 0.0
        rate = faults.get("slow", 0.0)
        if rate > 0 and rng.random() < rate:
            slow = user.slow_seconds
            user.fault_counts["slow"] += 1
        for kind in FAULT_ORDER:
            rate = faults.get(kind, 0.0)
            if rate > 0 and rng.random() < rate:
                user.fault_counts[kind] += 1
                return slow, kind
        return slow, None

    def fault_reject(self, user: User, kind: str) -> Reject:
        if kind == "401":
            return Reject(401, "Unauthorized")
        if kind == "429":
            return Reject(429, "Too many requests", {"Retry-After": seconds_header(user.retry_after)})
        if kind == "412":
            return Reject(412, "Insufficient credits")
        if kind == "596":
            return Reject(596, "Account on hold")
        status = self.rng.choice((500, 502, 503, 504))
        return Reject(status, {500: "Internal server error", 502: "Bad gateway",
                               503: "Service unavailable", 504: "Gateway timeout"}[status])

    # ------------------------------------------------------------------ jobs
    def _job_id(self, provider: str) -> str:
        self._seq += 1
        base = EMULATIONS[provider].job_id_base
        return str(uuid.uuid4()) if base is None else str(base + self._seq)

    def _check_pace(self, user: User, now: float) -> None:
        """The service's pacing (any 60 s, any 24 h): past it a create is refused and counted."""
        user.starts = [t for t in user.starts if t > now - 86400]
        in_minute = sum(1 for t in user.starts if t > now - 60)
        if (user.per_minute is not None and in_minute >= user.per_minute) or \
                (user.per_day is not None and len(user.starts) >= user.per_day):
            self._count(user, "pace_violations")
            raise Reject(429, "Too many new jobs for this account's pace", {"Retry-After": "60"})
        user.starts.append(now)

    def create_job(self, user: User, payload: Any, key: str | None = None) -> tuple[Job, bool]:
        """Accept a generation: (job, replayed). Raises Reject (429/422/412) or BadRequest."""
        if key and (job := user.idem.get(key)) is not None:
            return job, True
        if not isinstance(payload, dict):
            raise BadRequest("payload must be a JSON object", "invalid_payload")
        duration = payload.get("sandbox_duration", user.duration)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise BadRequest("sandbox_duration must be a number >= 0", "invalid_sandbox_duration")
        now = self.clock()
        user.prune(now)
        if len(user.active) >= user.concurrency:
            self._count(user, "violations")
            raise Reject(429, "Too many concurrent jobs", {"Retry-After": seconds_header(user.retry_after)})
        text = prompt_text(payload)
        if "[moderated]" in text:
            raise Reject(422, "Prompt rejected by moderation")
        if user.credits is not None:
            if user.credits <= 0:
                raise Reject(412, "Insufficient credits")
            user.credits -= 1
        self._check_pace(user, now)
        digest = canonical(payload)
        if digest in user.payloads:
            self._count(user, "duplicates")
        user.payloads.add(digest)
        job = Job(self._job_id(user.provider), user, now, float(duration), "[fail]" in text, payload, key)
        user.jobs[job.id] = job
        if key:
            user.idem[key] = job
        user.active.append(job)
        user.counts["submitted"] += 1
        user.max_concurrent = max(user.max_concurrent, len(user.active))
        return job, False

    def find_job(self, user: User, job_id: str) -> Job:
        job = user.jobs.get(job_id)
        if job is None:
            raise Reject(404, "Not found")
        return job

    def cancel_job(self, job: Job) -> Job:
        now = self.clock()
        if job.phase(now) in ("pending", "running"):
            job.canceled_at = now
            user = job.user
            user.active = [j for j in user.active if j is not job]
            user.counts["canceled"] += 1
        return job

    # ------------------------------------------------------------------ stats
    def stats(self, provider: str | None = None) -> dict[str, Any]:
        now = self.clock()
        users: dict[str, Any] = {}
        for user in self.users.values():
            user.prune(now)
            if provider is not None and user.provider != provider:
                continue
            c = user.counts
            users[user.id] = {
                "provider": user.provider,
                "max_concurrent": user.max_concurrent,
                "running": len(user.active),
                **{name: c[name] for name in ("submitted", "completed", "failed", "canceled", "violations",
                                              "duplicates", "logins", "refreshes", "expired_token_requests",
                                              "pace_violations")},
                "credits": user.credits,
                "faults": dict(user.fault_counts),
            }
        totals = {name: self.counts[name] for name in
                  ("violations", "duplicates", "expired_token_requests", "requests", "logins", "refreshes",
                   "pace_violations")}
        return {**totals, "users": users, **{name: plugin.stats() for name, plugin in self.plugins.items()}}
