"""Fuzz the API from its own OpenAPI document (schemathesis): no server error, every answer as documented.

Every operation of `app.openapi()` gets generated requests (valid and invalid
bodies, odd path parameters) with a valid token, against an app whose accounts
exist, so requests reach the core instead of stopping at "no account". Checks:
no 5xx, the status is one the document declares, the content type and the body
match the declared response schema (errors: `{"error", "code"}`).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

TOKEN = "fuzz-api-token-0123456789"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = int(os.environ.get("DISPATCHER_FUZZ_EXAMPLES", "12"))  # per operation; ~50 operations


def _document() -> dict:
    """The OpenAPI document, from an app whose core never connects (building the document needs no Redis)."""
    from cryptography.fernet import Fernet

    from dispatcher.api.app import create_app
    from dispatcher.client import Dispatcher
    from dispatcher.settings import Settings

    offline = Settings(redis_url="redis://127.0.0.1:1/0", data_dir="/nonexistent", api_tokens=(TOKEN,),
                       secret_key=Fernet.generate_key().decode())
    return create_app(Dispatcher(offline.redis_url, offline)).openapi()


schema = schemathesis.openapi.from_dict(_document())


@pytest.fixture
def fuzzed_app(dispatcher, sandbox):
    """The app under test: the real core on the test Redis, one account per provider upstream and here."""
    from dispatcher.api.app import create_app

    for user in ({"provider": "runwayml", "email": "fuzz@example.com", "password": "fuzz-pw"},
                 {"provider": "pixverse", "email": "fuzz@example.com", "password": "fuzz-pw"},
                 {"provider": "minimax", "account": "800001", "token": "fuzz-minimax-token-0123456789"},
                 {"provider": "riffusion", "cookie": "fuzz-riffusion-cookie-0123456789"}):
        sandbox.post("/_sandbox/users", json=user).raise_for_status()
    dispatcher.upsert_account("runwayml", {"email": "fuzz@example.com", "password": "fuzz-pw", "maxJobs": 2})
    dispatcher.upsert_account("pixverse", {"email": "fuzz@example.com", "password": "fuzz-pw", "maxJobs": 2})
    dispatcher.upsert_account("minimax", {"account": "800001", "token": "fuzz-minimax-token-0123456789",
                                          "maxJobs": 1})
    dispatcher.upsert_account("riffusion", {"cookie": "fuzz-riffusion-cookie-0123456789", "maxJobs": 2})
    dispatcher.core.settings = dispatcher.settings.with_(api_tokens=(TOKEN,))
    return create_app(dispatcher)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(case, fuzzed_app):
    case.call_and_validate(app=fuzzed_app, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
