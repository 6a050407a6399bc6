"""Kling (useapi's `/v1/kling`): accounts by email + password, re-login to refresh; the session's
expiry is `session.ExpireTime` / `ExpireTimeUTC`, as useapi shows it."""

from __future__ import annotations

from ..ids import EMAIL_ID, EMAIL_RULE
from ..spec import Demo, DemoAccount, ProviderSpec, email_password_accounts
from .adapter import KlingAdapter, render_credentials, render_jwt
from .shape import SHAPE
from .useapi import DIALECT as USEAPI


def _demo_accounts() -> list[DemoAccount]:
    return email_password_accounts(("kling-a@demo.example", 2))


SPEC = ProviderSpec(
    name="kling", title="Kling", api_prefix="/v1/kling",
    id_field="email", id_from_login=False, credential_fields=("email", "password"),
    max_jobs=(1, 50), recommended_max_jobs=None, refresh="relogin",
    adapter=KlingAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    shape=SHAPE, useapi=USEAPI, demo=Demo("videos/text2video", _demo_accounts),
    operations=("videos/text2video", "videos/image2video"),
    id_pattern=EMAIL_ID, id_rule=EMAIL_RULE, session_key="session",
    poll_backoff=(2.0, 3.0, 5.0, 10.0),
)
