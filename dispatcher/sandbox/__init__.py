"""Simulated upstream ("sandbox"): a real HTTP server emulating each provider
(login/refresh/create/poll/cancel; one module each in `upstreams/`), with real JWT expiry, per-account concurrency
enforcement (429 + violation counting), idempotency, and injectable faults.

It shares no code with the dispatcher's provider adapters on purpose.
"""

from .app import build_app
from .server import SandboxProcess, serve
from .state import Sandbox

__all__ = ["build_app", "serve", "SandboxProcess", "Sandbox"]
