"""The emulated services, one module each: a module here that declares `EMULATION` (with
`model.register`) and `routes(sb)` is discovered and served. A service that logs in like the
others (email + password) needs nothing more; the shared state still knows two special logins
by name (MiniMax's pasted token, Riffusion's cookie)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ..model import Emulation

MODULES: dict[str, ModuleType] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if isinstance(getattr(_module, "EMULATION", None), Emulation):
        MODULES[_module.EMULATION.name] = _module


def all_routes(sb) -> list:
    return [route for module in MODULES.values() for route in module.routes(sb)]
