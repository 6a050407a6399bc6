"""Secrets generated once into the data directory (the Fernet key, the API token, the embedded
Redis's password): created atomically with mode 0600, safe against concurrent first starts.

Apart from `secrets` so that the embedded Redis (`ops.redis_server`, which `connection` uses)
can read its password without importing `secrets`, which itself connects to Redis.
"""

from __future__ import annotations

import os
import secrets as _stdlib_secrets
from pathlib import Path


def read_or_create(path: Path, make) -> str:
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
