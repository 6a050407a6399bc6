"""Simulated upstream ("sandbox"): a real HTTP server emulating each provider
(login/refresh/create/poll/cancel; one module each in `upstreams/`), with real JWT expiry, per-account concurrency
enforcement (429 + violation counting), idempotency, and injectable faults.

Under `/useapi` it also emulates api.useapi.net (`useapi/`): the same people's accounts, configured
through useapi's account routes, with useapi's own balancing, `maxJobs` admission (429 + violation
counting), scheduler and answer shapes; `DISPATCHER_USEAPI_URL=<sandbox>/useapi`.

It shares no code with the dispatcher's provider adapters on purpose.
"""

from .app import build_app
from .server import SandboxProcess, serve
from .state import Sandbox

__all__ = ["build_app", "serve", "SandboxProcess", "Sandbox"]
