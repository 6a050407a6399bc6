"""Lua scripts of the dispatcher core (outside capacity), each in its own file, loaded once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_DIR = Path(__file__).parent


@lru_cache(maxsize=None)
def source(name: str) -> str:
    return (_DIR / f"{name}.lua").read_text()


def register(client, name: str):
    """A redis-py Script bound to `client` (EVALSHA with automatic load)."""
    return client.register_script(source(name))
