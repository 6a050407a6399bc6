"""PixVerse (useapi's `/v2/pixverse`): accounts by email + password, re-login to refresh."""

from __future__ import annotations

from ..ids import EMAIL_ID, EMAIL_RULE
from ..spec import Demo, DemoAccount, ProviderSpec, email_password_accounts
from .adapter import PixVerseAdapter, render_credentials, render_jwt
from .shape import SHAPE
from .useapi import DIALECT as USEAPI


# useapi's PixVerse v2 video creates (answering `video_id`), then `create` and `gen`, which Python
# callers and the tests submit directly.
OPERATIONS = ("videos/create", "videos/create-frames", "videos/extend", "videos/restyle", "videos/lipsync",
              "create", "gen")


def _demo_accounts() -> list[DemoAccount]:
    return email_password_accounts(("pix-a@demo.example", 2), ("pix-b@demo.example", 1))


SPEC = ProviderSpec(
    name="pixverse", title="PixVerse", api_prefix="/v2/pixverse",
    id_field="email", id_from_login=False, credential_fields=("email", "password"),
    max_jobs=(1, 8), recommended_max_jobs=None, refresh="relogin",
    adapter=PixVerseAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    shape=SHAPE, useapi=USEAPI, demo=Demo("videos/create", _demo_accounts), operations=OPERATIONS,
    id_pattern=EMAIL_ID, id_rule=EMAIL_RULE,
)
