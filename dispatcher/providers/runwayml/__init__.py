"""Runway (useapi's `/v1/runwayml`): accounts by email + password, re-login to refresh."""

from __future__ import annotations

from ..ids import EMAIL_ID, EMAIL_RULE
from ..spec import Demo, DemoAccount, ProviderSpec, email_password_accounts
from .adapter import RunwayAdapter, render_credentials, render_jwt
from .shape import SHAPE
from .useapi import DIALECT as USEAPI


# useapi's Runway creates (its documentation, its example clients `videos/create` and `frames/create`,
# and what the n8n node `eegejuru/n8n-nodes-useapi` posts: `gen3turbo/create`, `gen3turbo/video`,
# `lipsync/create`), then Runway's own task types that Python callers and the benchmarks submit
# directly (`gen3a_turbo`, `text_to_video`, `gen3turbo`, `gen4/video/create`, `gen`).
OPERATIONS = (
    "videos/create", "frames/create",
    "gen4/create", "gen4turbo/create", "gen4/video", "gen4/upscale",
    "gen3turbo/create", "gen3turbo/video", "gen3turbo/extend", "gen3turbo/expand", "gen3turbo/actone",
    "gen3/create", "gen3/extend", "gen3/video",
    "lipsync/create",
    "gen3a_turbo", "text_to_video", "gen3turbo", "gen4/video/create", "gen",
)


def _demo_accounts() -> list[DemoAccount]:
    return email_password_accounts(("studio-a@demo.example", 3), ("studio-b@demo.example", 2))


SPEC = ProviderSpec(
    name="runwayml", title="Runway", api_prefix="/v1/runwayml",
    id_field="email", id_from_login=False, credential_fields=("email", "password"),
    max_jobs=(1, 10), recommended_max_jobs=5, refresh="relogin",
    adapter=RunwayAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    shape=SHAPE, useapi=USEAPI, demo=Demo("gen3turbo/create", _demo_accounts), operations=OPERATIONS,
    id_pattern=EMAIL_ID, id_rule=EMAIL_RULE,
    poll_backoff=(1.0, 2.0, 3.0, 5.0, 10.0),
)
