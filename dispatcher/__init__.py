"""dispatcher: self-hosted multi-account load balancing for AI generation services.

The supported Python surface:

    from dispatcher import Dispatcher
    d = Dispatcher.from_url()            # DISPATCHER_REDIS_URL, or the embedded Redis
    job = d.submit("runwayml", "gen3turbo/create", {"promptText": "a cat"})
    job.result(timeout=600)
"""

from .client import Dispatcher, Handle
from .errors import (DispatcherError, LoginFailed, NoCapacity, NotFound, StoreUnavailable, Unauthorized,
                     UpstreamError, ValidationError)
from .settings import Settings

__all__ = [
    "Dispatcher", "Handle", "Settings",
    "DispatcherError", "LoginFailed", "NoCapacity", "NotFound", "StoreUnavailable", "Unauthorized",
    "UpstreamError", "ValidationError",
]
