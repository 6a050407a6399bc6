"""MiniMax / Hailuo (useapi's `/v1/minimax`): a pasted browser token that cannot be refreshed."""

from __future__ import annotations

from ..ids import NUMERIC_ID, NUMERIC_RULE
from ..spec import Demo, DemoAccount, ProviderSpec
from .adapter import MiniMaxAdapter, render_credentials, render_jwt
from .shape import SHAPE
from .useapi import DIALECT as USEAPI


# useapi's MiniMax creates: `videos/create` (its example client, the n8n node) and
# `images/create` (the n8n node; answered as images, `imageId`), then `video` and `gen`, which
# Python callers and the tests submit directly.
OPERATIONS = ("videos/create", "images/create", "video", "gen")


def _demo_accounts() -> list[DemoAccount]:
    # the sandbox mints the pasted-style token for its user
    return [DemoAccount({"account": "310001"}, {"account": "310001", "maxJobs": 2}, "310001",
                        sandbox_fields=("token",))]


SPEC = ProviderSpec(
    name="minimax", title="MiniMax", api_prefix="/v1/minimax",
    id_field="account", id_from_login=False, credential_fields=("account", "token"),
    max_jobs=(1, 10), recommended_max_jobs=3, refresh="none",
    adapter=MiniMaxAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    shape=SHAPE, useapi=USEAPI, demo=Demo("videos/create", _demo_accounts), operations=OPERATIONS,
    id_pattern=NUMERIC_ID, id_rule=NUMERIC_RULE, header_fields=("token",),  # the token is the `token` header
)
