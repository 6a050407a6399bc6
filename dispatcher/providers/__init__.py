"""Provider registry: each provider is one module with a `SPEC`.

Adding a provider means adding one module here that defines `SPEC`: the
registry discovers it; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import NotFound
from .base import Adapter, Poll, ProviderSpec, Session

REGISTRY: dict[str, ProviderSpec] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name == "base":
        continue
    _spec = getattr(importlib.import_module(f"{__name__}.{_info.name}"), "SPEC", None)
    if isinstance(_spec, ProviderSpec):
        REGISTRY[_spec.name] = _spec


def get(name: str) -> ProviderSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise NotFound(f"Unknown provider {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def all_specs() -> list[ProviderSpec]:
    return list(REGISTRY.values())


__all__ = ["Adapter", "Poll", "ProviderSpec", "Session", "REGISTRY", "get", "all_specs"]
