"""HS256 JSON Web Tokens with the standard library only (base64url without padding)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def mint(claims: dict[str, Any], secret: bytes) -> str:
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing = _HEADER + b"." + body
    sig = _b64(hmac.new(secret, signing, hashlib.sha256).digest())
    return (signing + b"." + sig).decode()


def verify(token: str, secret: bytes) -> dict[str, Any]:
    """Claims of a well-signed HS256 token (expiry is NOT checked here); else InvalidToken."""
    try:
        head, body, sig = token.split(".")
        header = json.loads(_unb64(head))
        signing = f"{head}.{body}".encode()
        expected = hmac.new(secret, signing, hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(expected, _unb64(sig)):
            raise InvalidToken("bad signature")
        claims = json.loads(_unb64(body))
    except InvalidToken:
        raise
    except Exception as exc:  # malformed base64 / json / shape
        raise InvalidToken("malformed token") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("malformed claims")
    return claims


def decode_unverified(token: str) -> dict[str, Any]:
    """Claims without checking the signature (for tests and debugging)."""
    return json.loads(_unb64(token.split(".")[1]))
