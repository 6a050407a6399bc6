"""Runway (useapi's `/v1/runwayml`): accounts by email + password, re-login to refresh."""

from __future__ import annotations

from ..ids import EMAIL_ID, EMAIL_RULE
from ..spec import Demo, DemoAccount, ProviderSpec, email_password_accounts
from .adapter import RunwayAdapter, render_credentials, render_jwt
from .shape import SHAPE
from .useapi import DIALECT as USEAPI


def _demo_accounts() -> list[DemoAccount]:
    return email_password_accounts(("studio-a@demo.example", 3), ("studio-b@demo.example", 2))


SPEC = ProviderSpec(
    name="runwayml", title="Runway", api_prefix="/v1/runwayml",
    id_field="email", id_from_login=False, credential_fields=("email", "password"),
    max_jobs=(1, 10), recommended_max_jobs=5, refresh="relogin",
    adapter=RunwayAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    shape=SHAPE, useapi=USEAPI, demo=Demo("gen3turbo/create", _demo_accounts),
    id_pattern=EMAIL_ID, id_rule=EMAIL_RULE,
    poll_backoff=(1.0, 2.0, 3.0, 5.0, 10.0),
)
