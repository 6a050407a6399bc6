"""Emulation of api.useapi.net, mounted under `/useapi` (`DISPATCHER_USEAPI_URL=<sandbox>/useapi`).

useapi.net fronts Runway, PixVerse, MiniMax, Kling and Riffusion with one Bearer token: it keeps
each provider account's session, balances jobs over accounts with free `maxJobs` capacity, and
answers in its own shapes. Here its accounts log in against the sandbox's own emulations
(in-process, through the shared state), so the users made with `POST /_sandbox/users` are the
same people, and each job runs on the provider's emulation with its faults and phases.

Written from useapi's documentation and its published example clients; it shares no code with
the dispatcher's useapi-shaped API.

Modules: `specs` (what differs per provider), `state` (tokens, accounts, jobs, counters),
`sessions` (logins, expiry, Riffusion renewal), `render` (answer shapes), `http` (envelope,
token gate), and the routes: `accounts`, `jobs`, `scheduler`, `files`.
"""

from __future__ import annotations

from starlette.routing import Mount

from ..state import Sandbox
from . import accounts, files, jobs, scheduler
from .http import sub_app
from .state import UseapiState

PREFIX = "/useapi"


def mount(sb: Sandbox) -> Mount:
    """The `/useapi` sub-application; its state registers itself as `sb.plugins["useapi"]`."""
    ustate = UseapiState(sb)
    routes = [*accounts.routes(ustate), *jobs.routes(ustate), *scheduler.routes(ustate), *files.routes(ustate)]
    return Mount(PREFIX, app=sub_app(ustate, routes))


__all__ = ["PREFIX", "UseapiState", "mount"]
