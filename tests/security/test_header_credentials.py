"""Credentials that travel in an HTTP header (issue 15, finding 3): a MiniMax token (the `token`
header) or a Riffusion cookie (a Cookie header's value) holding a line break, another control
character or a non-ASCII character is refused with 400 before any upstream call (it was a 502 from
the HTTP client), the value is never echoed, and nothing is stored. A credential sent in a JSON
body (a Runway password) keeps every character."""

from __future__ import annotations

BAD = ["mm-token-0123456789\nX-Injected: 1", "mm-token-0123456789\r\n", "\r\nmm-token-0123456789",
       "mm-token\x000123456789", "mm-token\t0123456789", "mm-token\x7f0123456789", "mm-token-é-0123456789",
       " mm-token-0123456789", "mm-token-0123456789 "]
MESSAGE = "cannot be sent in an HTTP header"


def upstream_requests(sandbox) -> tuple[int, int]:
    stats = sandbox.get("/_sandbox/stats").json()
    return stats["requests"], stats["logins"]


def test_a_minimax_token_a_header_cannot_carry_is_refused_before_any_upstream_call(api, sandbox, r, snapshot):
    before, calls = snapshot(r), upstream_requests(sandbox)
    for token in BAD:
        res = api.post("/v1/minimax/accounts/123456", json={"account": "123456", "token": token, "maxJobs": 1})
        assert res.status_code == 400, (token, res.status_code, res.text)
        assert res.json() == {"error": f"Parameter token holds characters that {MESSAGE} (a line break, another "
                                       "control character or a non-ASCII character)", "code": 400}
    assert snapshot(r) == before
    assert upstream_requests(sandbox) == calls

    # a token a header carries (spaces inside are fine) still logs in
    sandbox.post("/_sandbox/users", json={"provider": "minimax", "account": "123456",
                                          "token": "mm-token 0123456789"}).raise_for_status()
    ok = api.post("/v1/minimax/accounts/123456", json={"account": "123456", "token": "mm-token 0123456789",
                                                        "maxJobs": 1})
    assert ok.status_code == 200, ok.text


def test_a_riffusion_cookie_with_a_line_break_is_refused_and_a_json_password_keeps_any_character(
        api, sandbox, r, snapshot):
    before, calls = snapshot(r), upstream_requests(sandbox)
    res = api.post("/v1/riffusion/accounts", json={"cookie": "sb-access-token=abc\r\nSet-Cookie: x=1", "maxJobs": 2})
    assert res.status_code == 400 and MESSAGE in res.json()["error"], res.text
    assert "Set-Cookie" not in res.text
    assert snapshot(r) == before and upstream_requests(sandbox) == calls

    password = "pässwörd\nwith a line break\tand a tab"  # sent in the JSON login body: any character
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": "json-body@example.com",
                                          "password": password}).raise_for_status()
    ok = api.post("/v1/runwayml/accounts/json-body@example.com",
                  json={"email": "json-body@example.com", "password": password, "maxJobs": 1})
    assert ok.status_code == 200, ok.text
