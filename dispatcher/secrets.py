"""Secrets at rest and on display.

- `Vault` encrypts credentials and JWTs with Fernet before they reach Redis.
  The key comes from `DISPATCHER_SECRET_KEY`, or is generated once into the
  data directory with mode 0600.
- API tokens come from `DISPATCHER_API_TOKENS`, or one is generated likewise.
- `mask_whole` / `mask_token` render secrets the way useapi does.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets as _stdlib_secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigurationError
from .logging import SECRET_KEYS, register_secret

MASK = "…secured…"


def mask_whole(value) -> str | None:
    return None if value in (None, "") else MASK


def mask_token(value) -> str | None:
    """`abc…secured…xyz`: first and last three characters kept, so a user can tell tokens apart."""
    if value in (None, ""):
        return None
    value = str(value)
    return f"{value[:3]}{MASK}{value[-3:]}" if len(value) >= 12 else MASK


def _read_or_create(path: Path, make) -> str:
    """Read a generated secret, or create it once (mode 0600), safe against concurrent first starts."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_stdlib_secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, make().encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic: exactly one process's value wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


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
        key = settings.secret_key or _read_or_create(
            Path(settings.data_dir) / "secret.key", lambda: Fernet.generate_key().decode()
        )
        return cls(key)

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


def api_tokens(settings) -> tuple[str, ...]:
    """The accepted API tokens: configured, or one generated into the data directory."""
    if settings.api_tokens:
        tokens = tuple(settings.api_tokens)
    else:
        tokens = (_read_or_create(Path(settings.data_dir) / "api_token", lambda: _stdlib_secrets.token_urlsafe(24)),)
    for t in tokens:
        register_secret(t)
    return tokens


def token_matches(candidate: str, tokens: tuple[str, ...]) -> bool:
    """Constant-time comparison against every accepted token."""
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(candidate.encode(), t.encode())
    return ok
