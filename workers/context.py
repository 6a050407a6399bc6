"""One `Core` per worker process, built from the environment on first use."""

from __future__ import annotations

from dispatcher.core import Core
from dispatcher.settings import Settings

_core: Core | None = None


def dispatcher() -> Core:
    """The process's Core (the step functions' view of the dispatcher)."""
    global _core
    if _core is None:
        _core = Core.from_settings(Settings.from_env())
    return _core


def install(core: Core) -> None:
    """Use an existing Core (the pool builds one per process and shares it with maintenance)."""
    global _core
    _core = core
