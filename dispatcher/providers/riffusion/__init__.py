"""Riffusion (useapi's `/v1/riffusion`): a browser cookie logs in once; a rotating refresh token
keeps the session. The account id (`user_id`) comes from the upstream login."""

from __future__ import annotations

import secrets

from ..spec import Demo, DemoAccount, ProviderSpec
from .adapter import RiffusionAdapter, render_credentials, render_jwt
from .shape import SHAPE
from .useapi import DIALECT as USEAPI


# useapi's Riffusion creates (`music/create-prompt`, `music/create-compose`, and the older
# `music/create`), then `music/generate`, `create` and `gen`, which Python callers, the tests and
# the benchmarks submit directly.
OPERATIONS = ("music/create-prompt", "music/create-compose", "music/create", "music/generate", "create", "gen")


def _demo_accounts() -> list[DemoAccount]:
    out = []
    for max_jobs in (2, 1):
        cookie = f"sb-access-token={secrets.token_urlsafe(18)}"
        out.append(DemoAccount({"cookie": cookie}, {"cookie": cookie, "maxJobs": max_jobs}, None))
    return out


SPEC = ProviderSpec(
    name="riffusion", title="Riffusion", api_prefix="/v1/riffusion",
    id_field="user_id", id_from_login=True, credential_fields=("cookie",),
    max_jobs=(1, 10), recommended_max_jobs=6, refresh="refresh_token",
    adapter=RiffusionAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    shape=SHAPE, useapi=USEAPI, demo=Demo("music/create", _demo_accounts), operations=OPERATIONS,
    header_fields=("cookie",),  # a browser cookie: a Cookie header's value, whatever carries it here
)
