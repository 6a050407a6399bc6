"""dispatcher: self-hosted multi-account load balancing for AI generation services.

The supported Python surface is what this module exports (README "Python"):

    from dispatcher import Dispatcher
    d = Dispatcher.from_url()            # DISPATCHER_REDIS_URL, or the embedded Redis
    job = d.submit("runwayml", "gen3turbo/create", {"promptText": "a cat"})
    job.result(timeout=600)

Times are seconds everywhere (instants: epoch seconds). As a library it logs through the
standard `logging` module (logger `dispatcher`) and writes nothing to stdout. Typed (`py.typed`).
"""

from .client import Dispatcher, Handle
from .errors import (DispatcherError, LoginFailed, NoCapacity, NotFound, StoreUnavailable, Unauthorized,
                     UpstreamError, ValidationError)
from .generations import Generation
from .settings import Settings

__all__ = [
    "Dispatcher", "Handle", "Generation", "Settings",
    "DispatcherError", "LoginFailed", "NoCapacity", "NotFound", "StoreUnavailable", "Unauthorized",
    "UpstreamError", "ValidationError",
]
