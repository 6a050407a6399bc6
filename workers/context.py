"""One `Dispatcher` per worker process, built from the environment on first use."""

from __future__ import annotations

from dispatcher.client import Dispatcher
from dispatcher.settings import Settings

_dispatcher: Dispatcher | None = None


def dispatcher() -> Dispatcher:
    global _dispatcher
    if _dispatcher is None:
        _dispatcher = Dispatcher.from_url(settings=Settings.from_env())
    return _dispatcher


def install(d: Dispatcher) -> None:
    """Use an existing Dispatcher (the pool builds one per process and shares it with maintenance)."""
    global _dispatcher
    _dispatcher = d
