"""Secrets at rest and on display.

- `Vault` encrypts credentials and JWTs with Fernet before they reach Redis.
  The key comes from `DISPATCHER_SECRET_KEY`, or is generated once into the
  data directory with mode 0600.
- API tokens come from `DISPATCHER_API_TOKENS`, or one is generated likewise.
- `check_key` stops a process whose key is not the one this Redis's secrets were
  sealed with, before it takes any job (a key-check value sealed once in Redis).
- `mask_whole` / `mask_token` render secrets the way useapi does.
"""

from __future__ import annotations

import hmac
import json
import secrets as _stdlib_secrets
import time
from pathlib import Path

import redis
from cryptography.fernet import Fernet, InvalidToken

from . import keys, providers
from .capacity.policy import TENANT
from .connection import connect
from .errors import ConfigurationError, StoreUnavailable
from .logging import SECRET_KEYS, get_logger, register_secret
from .secret_files import read_or_create

MASK = "…secured…"


def mask_whole(value) -> str | None:
    return None if value in (None, "") else MASK


def mask_token(value) -> str | None:
    """`abc…secured…xyz`: first and last three characters kept, so a user can tell tokens apart."""
    if value in (None, ""):
        return None
    value = str(value)
    return f"{value[:3]}{MASK}{value[-3:]}" if len(value) >= 12 else MASK


class Vault:
    OPENED_MAX = 1024  # ciphertexts whose plaintext `open` keeps

    def __init__(self, key: str):
        self.key = key
        self._opened: dict[bytes, bytes] = {}
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            raise ConfigurationError("DISPATCHER_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes)") from None

    @classmethod
    def from_settings(cls, settings) -> "Vault":
        key = settings.secret_key or read_or_create(
            Path(settings.data_dir) / "secret.key", lambda: Fernet.generate_key().decode()
        )
        return cls(key)

    def can_open(self, token: str | bytes) -> bool:
        """Whether this key opens `token` (no caching, no secret registered)."""
        try:
            self._fernet.decrypt(token.encode() if isinstance(token, str) else token)
            return True
        except InvalidToken:
            return False

    def seal(self, data: dict) -> str:
        for value in _leaves(data):
            register_secret(value)
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def open(self, token: str | bytes | None) -> dict:
        """The data sealed in `token` (a fresh dict each call). A sealed value read again
        (an account's session before every upstream call) is not decrypted again: the
        plaintext of the last `OPENED_MAX` ciphertexts stays in this process's memory,
        where the opened secrets live anyway. Fernet without a ttl makes this exact."""
        if not token:
            return {}
        sealed = token if isinstance(token, bytes) else token.encode()
        plain = self._opened.get(sealed)
        if plain is None:
            try:
                plain = self._fernet.decrypt(sealed)
            except InvalidToken:
                raise ConfigurationError("stored secrets cannot be decrypted: DISPATCHER_SECRET_KEY changed?") from None
            if len(self._opened) >= self.OPENED_MAX:
                self._opened.clear()
            self._opened[sealed] = plain
        data = json.loads(plain)
        for value in _leaves(data):
            register_secret(value)  # again on every open: a secret in use stays among the recent ones
        return data


def _leaves(data, key: str = ""):
    """The values stored under secret-named keys (passwords, cookies, tokens), not ids."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, str(k))
    elif isinstance(data, str) and key.lower() in SECRET_KEYS:
        yield data


KEY_CHECK = "dsp:vault:check"  # a known value sealed with the key this Redis's secrets use
_KEY_CHECK_VALUE = b"dispatcher secret key check v1"
KEY_MISMATCH = ("DISPATCHER_SECRET_KEY does not match the key this Redis's accounts were encrypted with "
                f"(checked against {KEY_CHECK}): start every process that shares this Redis with the same "
                "key (see <data dir>/secret.key on the machine that created the accounts)")


def check_key(vault: Vault, client, *, wait: bool = False) -> None:
    """Raise `ConfigurationError(KEY_MISMATCH)` unless `vault`'s key is the one this Redis's
    secrets are sealed with. One GET once the check value exists. The first process to check
    seals the value (SET NX: the first key wins); on a Redis from before the check, it first
    tries its key on one stored account of each provider, so a wrong key cannot claim it.

    Redis refusing the URL's password is a `ConfigurationError` too. Redis unreachable: with
    `wait`, retried (0.5 s doubling to 5 s, one log line each) until it answers; otherwise
    `StoreUnavailable`."""
    pause = 0.5
    while True:
        try:
            return _check_key(vault, client)
        except redis.AuthenticationError:
            raise ConfigurationError("Redis refused the password of DISPATCHER_REDIS_URL (or of the embedded "
                                     "Redis's <data dir>/redis_password)") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not wait:
                raise StoreUnavailable("Redis is unavailable: the secret key could not be checked") from None
            get_logger().warning("redis unavailable; checking the secret key when it answers",
                                 error=type(exc).__name__, retry_in=pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def check_settings_key(settings, *, wait: bool = True) -> None:
    """`check_key` for processes that hold no Core (the worker pool's supervisor)."""
    client = connect(settings.redis_url, sentinel_password=settings.redis_sentinel_password)
    try:
        check_key(Vault.from_settings(settings), client, wait=wait)
    finally:
        client.close()


def _check_key(vault: Vault, client) -> None:
    stored = client.get(KEY_CHECK)
    if stored is None:
        if not _opens_stored_accounts(vault, client):
            raise ConfigurationError(KEY_MISMATCH)
        client.set(KEY_CHECK, vault._fernet.encrypt(_KEY_CHECK_VALUE), nx=True)
        stored = client.get(KEY_CHECK)
    if stored is None or not vault.can_open(stored):
        raise ConfigurationError(KEY_MISMATCH)


def _opens_stored_accounts(vault: Vault, client) -> bool:
    names = sorted(providers.REGISTRY)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.srandmember(keys.accounts(name))
    picked = [(name, _text(member)) for name, member in zip(names, pipe.execute()) if member is not None]
    if not picked:
        return True
    pipe = client.pipeline(transaction=False)
    for name, account_id in picked:
        pipe.hget(keys.account(name, account_id), "creds")
    return all(vault.can_open(sealed) for sealed in pipe.execute() if sealed)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _split_token(entry: str) -> tuple[str | None, str]:
    """(tenant, token) of a configured entry: `tenant:token`, or a bare token (no tenant)."""
    tenant, sep, token = entry.partition(":")
    if sep and token and TENANT.fullmatch(tenant):
        return tenant, token
    return None, entry


def token_tenants(settings) -> dict[str, str]:
    """{token: tenant} for the configured tokens written `tenant:token`."""
    return {token: tenant for tenant, token in map(_split_token, settings.api_tokens) if tenant}


def api_tokens(settings) -> tuple[str, ...]:
    """The accepted API tokens: configured (an entry `tenant:token` gives the token; its
    requests are that tenant's), or one generated into the data directory."""
    if settings.api_tokens:
        tokens = tuple(token for _, token in map(_split_token, settings.api_tokens))
    else:
        tokens = (read_or_create(Path(settings.data_dir) / "api_token", lambda: _stdlib_secrets.token_urlsafe(24)),)
    for t in tokens:
        register_secret(t)
    return tokens


def token_matches(candidate: str, tokens: tuple[str, ...]) -> bool:
    """Constant-time comparison against every accepted token."""
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(candidate.encode(), t.encode())
    return ok
