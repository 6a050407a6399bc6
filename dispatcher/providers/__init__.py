"""Provider registry: each provider is one folder, `providers/<name>/`, whose package defines `SPEC`.

Adding a provider means adding one folder here (its spec, adapter and shape) plus its sandbox
module: the registry discovers it, the HTTP API mounts its routes from it, and nothing else
names it. A folder removed leaves everything else importing and running.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import NotFound
from .adapter import MODERATED, Adapter, Poll, Session
from .spec import (ABSENT, ACCOUNTS, CANCEL, CREATE, LIST, STATUS, UPLOAD, Demo, DemoAccount, ProviderSpec, Route,
                   Shape, UnknownOperation)

REGISTRY: dict[str, ProviderSpec] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.ispkg:
        continue  # the shared modules (adapter, spec, ids, rendering)
    _spec = getattr(importlib.import_module(f"{__name__}.{_info.name}"), "SPEC", None)
    if isinstance(_spec, ProviderSpec):
        if _spec.name != _info.name:
            raise ImportError(f"providers/{_info.name}/ declares a provider named {_spec.name!r}: name it as its folder")
        REGISTRY[_spec.name] = _spec


def get(name: str) -> ProviderSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise NotFound(f"Unknown provider {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def all_specs() -> list[ProviderSpec]:
    return list(REGISTRY.values())


__all__ = ["Adapter", "Poll", "ProviderSpec", "Session", "Shape", "Route", "Demo", "DemoAccount", "MODERATED",
           "CREATE", "STATUS", "CANCEL", "LIST", "UPLOAD", "ABSENT", "ACCOUNTS", "UnknownOperation", "REGISTRY",
           "get", "all_specs"]
