"""Account ids (issue 15, finding 2): an id that `{prefix}/accounts/{id}` could not reach (`/`, `..`,
`?`, `#`, `%`, spaces, control or non-ASCII characters) is refused at validation with a 400 naming
the rule, before any login, and nothing is stored. The ids useapi's own account pages show
(the useapi account pages the product starts from, and its reference notes) stay valid and reachable.

Each refused id is first registered in the sandbox, so that the code before the fix, which
logged in and stored it, would have created an account nobody could reach again."""

from __future__ import annotations

import pytest

from dispatcher import providers
from dispatcher.accounts import validate_body
from dispatcher.errors import ValidationError

UNREACHABLE_EMAILS = ["a/b@example.com", "../up@example.com", "a..b@example.com", "x@example.com/..", "..",
                      ".", ".a@example.com", "a.@example.com", "a b@example.com", "a?b@example.com",
                      "a#b@example.com", "a%2Fb@example.com", "a\\b@example.com", "a\r\n@example.com",
                      "é@example.com", "a@exa..mple.com", "a@-example.com", "@example.com", "a@", "a" * 250 + "@x.io"]
UNREACHABLE_MINIMAX = ["12/34", "../1", "1..2", "1.2", "12 34", "abc", "١٢٣", "1\x00"]


def login_count(sandbox) -> int:
    return sandbox.get("/_sandbox/stats").json()["logins"]


def refused_without_trace(api, sandbox, r, snapshot, path: str, body: dict, field: str) -> None:
    before, logins = snapshot(r), login_count(sandbox)
    res = api.post(path, json=body)
    assert res.status_code == 400, (body[field], res.status_code, res.text)
    assert res.json()["error"].startswith(f"Parameter {field} must be"), res.text
    assert snapshot(r) == before, f"{body[field]!r} left something in Redis"
    assert login_count(sandbox) == logins, f"{body[field]!r} reached the upstream"


@pytest.mark.parametrize("email", UNREACHABLE_EMAILS)
@pytest.mark.parametrize("prefix,provider", [("/v1/runwayml", "runwayml"), ("/v2/pixverse", "pixverse")])
def test_an_email_id_a_url_cannot_carry_is_refused_before_login(api, sandbox, r, snapshot, prefix, provider, email):
    sandbox.post("/_sandbox/users", json={"provider": provider, "email": email, "password": "pw-0123456789"})
    body = {"email": email, "password": "pw-0123456789", "maxJobs": 1}
    refused_without_trace(api, sandbox, r, snapshot, f"{prefix}/accounts", body, "email")


@pytest.mark.parametrize("account", UNREACHABLE_MINIMAX)
def test_a_minimax_account_that_is_not_numeric_is_refused_before_login(api, sandbox, r, snapshot, account):
    sandbox.post("/_sandbox/users", json={"provider": "minimax", "account": account, "token": "mm-token-0123456789"})
    body = {"account": account, "token": "mm-token-0123456789", "maxJobs": 1}
    refused_without_trace(api, sandbox, r, snapshot, "/v1/minimax/accounts", body, "account")


@pytest.mark.parametrize("user_id", ["x/../y", "..", "a b", "a?b", "a%2F"])
def test_a_riffusion_login_answering_an_unusable_user_id_stores_nothing(api, sandbox, r, snapshot, user_id):
    cookie = "sb-access-token=odd-user-id-cookie-0123456789"
    sandbox.post("/_sandbox/users", json={"provider": "riffusion", "cookie": cookie,
                                          "user_id": user_id}).raise_for_status()
    before = snapshot(r)
    res = api.post("/v1/riffusion/accounts", json={"cookie": cookie, "maxJobs": 2})
    assert res.status_code == 502, res.text  # the upstream's answer, not the caller's mistake
    assert "account id that cannot be used" in res.json()["error"] and cookie not in res.text
    assert snapshot(r) == before


SEED_IDS = [  # the ids useapi's account pages show, and ordinary addresses of the same kind
    ("/v1/runwayml", "runwayml", "email", "studio-a@demo.example"),
    ("/v1/runwayml", "runwayml", "email", "john.o'brien+runway@mail.example.co.uk"),
    ("/v2/pixverse", "pixverse", "email", "First_Last-1@sub.example.com"),
    ("/v1/minimax", "minimax", "account", "123456"),
    ("/v1/riffusion", "riffusion", "user_id", "b511d6f4-1e33-45c3-885d-0fa094dd5d70"),
    ("/v1/riffusion", "riffusion", "user_id", "e1f3d2a1-5c6b-4d3a-9b7c-0123456789ab"),
]


def test_real_ids_stay_valid_and_reachable_and_the_rule_refuses_the_rest(api, sandbox):
    for prefix, provider, field, ident in SEED_IDS:
        if provider == "riffusion":
            cookie = f"sb-access-token=seed-{ident}"
            sandbox.post("/_sandbox/users", json={"provider": provider, "cookie": cookie,
                                                  "user_id": ident}).raise_for_status()
            res = api.post(f"{prefix}/accounts", json={"cookie": cookie, "maxJobs": 2})
        else:
            secret = {"email": {"password": "pw-0123456789"}, "account": {"token": f"mm-token-{ident}-abcdef"}}[field]
            sandbox.post("/_sandbox/users", json={"provider": provider, field: ident, **secret}).raise_for_status()
            res = api.post(f"{prefix}/accounts/{ident}", json={field: ident, **secret, "maxJobs": 1})
        assert res.status_code == 200 and res.json()[field] == ident, res.text
        assert api.get(f"{prefix}/accounts/{ident}").json()[field] == ident
        assert api.get(f"{prefix}/accounts").json()[ident][field] == ident
        assert api.delete(f"{prefix}/accounts/{ident}").status_code == 200

    refused = []
    for email in UNREACHABLE_EMAILS:
        with pytest.raises(ValidationError) as caught:
            validate_body(providers.get("runwayml"), {"email": email, "password": "p", "maxJobs": 1}, None)
        refused.append(caught.value.status)
    assert set(refused) == {400}
