"""Malformed requests: each answered 4xx with `{"error", "code"}`, Redis unchanged, nothing leaked.

One row per request. Every account of the four providers is configured first, so a
row reaches the validation it targets instead of stopping at "no account". After
each request: the status is the expected one, the body is exactly `{"error": str,
"code": status}`, a snapshot of every Redis key equals the one taken before, and
the answer holds no stack trace and no stored secret.
"""

from __future__ import annotations

import json

import pytest

RUN, PIX, MM, RIFF = "/v1/runwayml", "/v2/pixverse", "/v1/minimax", "/v1/riffusion"
R_EMAIL, P_EMAIL, M_ACCOUNT = "bad-run@example.com", "bad-pix@example.com", "700001"
SECRETS = {"run_pw": "bad-input-run-Pa55!", "pix_pw": "bad-input-pix-Pa55!",
           "mm_token": "bad-input-minimax-token-0123456789", "cookie": "sb-access-token=bad-input-cookie-0123456789"}
API_TOKEN = "bad-input-api-token-0123456789"
HEX = "0123456789abcdef" * 2
MIB = 1 << 20


# accounts.validate_body (dispatcher/accounts.py, not in this suite's files): int(float("1e309")) raises
# OverflowError, which it does not catch -> 500. JSON numbers are refused earlier (body.py); strings are not.


def j(body) -> dict:
    return {"content": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}}


def raw(data: bytes, content_type: str = "application/json") -> dict:
    return {"content": data, "headers": {"Content-Type": content_type}}


def multipart(body: bytes, boundary: str | None = "XyZ") -> dict:
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return raw(body, ctype)


def form_part(name: str, value: str, boundary: str = "XyZ") -> bytes:
    return f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def chunks(total: int):
    sent = 0
    while sent < total:
        yield b" " * min(65536, total - sent)
        sent += 65536


RUN_ACCOUNT = {"email": R_EMAIL, "password": SECRETS["run_pw"], "maxJobs": 3}
ACCT = f"{RUN}/accounts/{R_EMAIL}"
JOB = f"{RUN}/gen3a_turbo"

ROWS = [
    # -- account bodies: missing fields ---------------------------------------------------------
    ("acct missing email", "POST", ACCT, j({"password": "p", "maxJobs": 2}), 400),
    ("acct missing password", "POST", ACCT, j({"email": R_EMAIL, "maxJobs": 2}), 400),
    ("acct missing maxJobs", "POST", ACCT, j({"email": R_EMAIL, "password": "p"}), 400),
    ("acct empty object", "POST", ACCT, j({}), 400),
    ("acct empty body", "POST", ACCT, raw(b""), 400),
    ("pixverse missing password", "POST", f"{PIX}/accounts/{P_EMAIL}", j({"email": P_EMAIL, "maxJobs": 2}), 400),
    ("minimax missing token", "POST", f"{MM}/accounts/{M_ACCOUNT}", j({"account": M_ACCOUNT, "maxJobs": 1}), 400),
    ("riffusion missing cookie", "POST", f"{RIFF}/accounts", j({"maxJobs": 2}), 400),
    # -- account bodies: wrong types ----------------------------------------------------------------
    ("acct email int", "POST", ACCT, j({**RUN_ACCOUNT, "email": 5}), 400),
    ("acct email list", "POST", ACCT, j({**RUN_ACCOUNT, "email": [R_EMAIL]}), 400),
    ("acct email null", "POST", ACCT, j({**RUN_ACCOUNT, "email": None}), 400),
    ("acct email blank", "POST", ACCT, j({**RUN_ACCOUNT, "email": "   "}), 400),
    ("acct password int", "POST", ACCT, j({**RUN_ACCOUNT, "password": 12345678}), 400),
    ("acct password object", "POST", ACCT, j({**RUN_ACCOUNT, "password": {"p": 1}}), 400),
    ("acct password empty", "POST", ACCT, j({**RUN_ACCOUNT, "password": ""}), 400),
    ("acct password 20k chars", "POST", ACCT, j({**RUN_ACCOUNT, "password": "p" * 20000}), 400),
    ("acct maxJobs string", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": "five"}), 400),
    ("acct maxJobs bool", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": True}), 400),
    ("acct maxJobs list", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": [3]}), 400),
    ("acct maxJobs object", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": {"n": 3}}), 400),
    ("acct maxJobs null", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": None}), 400),
    ("acct maxJobs fraction", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": 2.5}), 400),
    ("minimax token int", "POST", f"{MM}/accounts/{M_ACCOUNT}", j({"account": M_ACCOUNT, "token": 7, "maxJobs": 1}),
     400),
    ("riffusion cookie list", "POST", f"{RIFF}/accounts", j({"cookie": ["a"], "maxJobs": 2}), 400),
    # -- account bodies: out of range ----------------------------------------------------------------
    ("acct maxJobs 0", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": 0}), 400),
    ("acct maxJobs -1", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": -1}), 400),
    ("acct maxJobs 11", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": 11}), 400),
    ("acct maxJobs 10**30", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": 10 ** 30}), 400),
    ("acct maxJobs 1e309 (overflows to inf)", "POST", ACCT,
     raw(b'{"email": "bad-run@example.com", "password": "p", "maxJobs": 1e309}'), 400),
    ("acct maxJobs NaN literal", "POST", ACCT, raw(b'{"email": "bad-run@example.com", "password": "p", '
                                                    b'"maxJobs": NaN}'), 400),
    ("acct maxJobs Infinity literal", "POST", ACCT, raw(b'{"email": "bad-run@example.com", "password": "p", '
                                                         b'"maxJobs": -Infinity}'), 400),
    ("acct maxJobs 5000 digits", "POST", ACCT, raw(b'{"email": "bad-run@example.com", "password": "p", '
                                                    b'"maxJobs": ' + b"9" * 5000 + b"}"), 400),
    ("pixverse maxJobs 9", "POST", f"{PIX}/accounts/{P_EMAIL}",
     j({"email": P_EMAIL, "password": "p", "maxJobs": 9}), 400),
    ("minimax maxJobs 0", "POST", f"{MM}/accounts/{M_ACCOUNT}",
     j({"account": M_ACCOUNT, "token": "t", "maxJobs": 0}), 400),
    ("riffusion maxJobs 11", "POST", f"{RIFF}/accounts", j({"cookie": "c", "maxJobs": 11}), 400),
    # -- path / body id mismatch ----------------------------------------------------------------------
    ("runway id mismatch", "POST", ACCT, j({**RUN_ACCOUNT, "email": "other@example.com"}), 400),
    ("runway id case mismatch", "POST", ACCT, j({**RUN_ACCOUNT, "email": R_EMAIL.upper()}), 400),
    ("pixverse id mismatch", "POST", f"{PIX}/accounts/{P_EMAIL}",
     j({"email": "x@example.com", "password": "p", "maxJobs": 2}), 400),
    ("minimax id mismatch", "POST", f"{MM}/accounts/{M_ACCOUNT}",
     j({"account": "700002", "token": "t", "maxJobs": 1}), 400),
    ("account unknown upstream (login refused)", "POST", "/v1/runwayml/accounts/nobody@example.com",
     j({"email": "nobody@example.com", "password": "wrong", "maxJobs": 2}), 401),
    # -- bodies that are not an object -----------------------------------------------------------------
    ("acct body array", "POST", ACCT, j([RUN_ACCOUNT]), 400),
    ("acct body string", "POST", ACCT, j("email"), 400),
    ("acct body number", "POST", ACCT, j(42), 400),
    ("acct body null", "POST", ACCT, j(None), 400),
    ("job body array", "POST", JOB, j([1, 2]), 400),
    ("job body string", "POST", JOB, j("prompt"), 400),
    ("job body true", "POST", JOB, j(True), 400),
    # -- broken JSON -------------------------------------------------------------------------------------
    ("acct broken json", "POST", ACCT, raw(b'{"email": '), 400),
    ("acct trailing garbage", "POST", ACCT, raw(b'{"maxJobs": 2} xx'), 400),
    ("acct single quotes", "POST", ACCT, raw(b"{'maxJobs': 2}"), 400),
    ("job broken json", "POST", JOB, raw(b'{"promptText": "a",}'), 400),
    ("job deep nesting", "POST", JOB, raw(b"[" * 200000 + b"]" * 200000), 400),
    ("job deep nesting in object", "POST", JOB, raw(b'{"a":' * 100000 + b"1" + b"}" * 100000), 400),
    ("job NaN in payload", "POST", JOB, raw(b'{"promptText": "a", "seed": NaN}'), 400),
    # -- non-UTF-8 ----------------------------------------------------------------------------------------
    ("acct latin-1 body", "POST", ACCT, raw('{"email": "é"}'.encode("latin-1")), 400),
    ("acct utf-16 body", "POST", ACCT, raw(json.dumps(RUN_ACCOUNT).encode("utf-16")), 400),
    ("job invalid utf-8", "POST", JOB, raw(b'{"promptText": "\xff\xfe"}'), 400),
    ("job lone surrogate bytes", "POST", JOB, raw(b'{"promptText": "\xed\xa0\x80"}'), 400),
    # -- wrong content types -------------------------------------------------------------------------------
    ("acct text/plain", "POST", ACCT, raw(json.dumps(RUN_ACCOUNT).encode(), "text/plain"), 415),
    ("acct xml", "POST", ACCT, raw(b"<account/>", "application/xml"), 415),
    ("acct octet-stream", "POST", ACCT, raw(b"\x00\x01", "application/octet-stream"), 415),
    ("job text/html", "POST", JOB, raw(b"<p>hi</p>", "text/html"), 415),
    ("job image/png", "POST", JOB, raw(b"\x89PNG", "image/png"), 415),
    ("urlencoded missing fields", "POST", ACCT, raw(b"maxJobs=2", "application/x-www-form-urlencoded"), 400),
    ("urlencoded garbage", "POST", ACCT, raw(b"%%%&&&===", "application/x-www-form-urlencoded"), 400),
    # -- broken multipart ------------------------------------------------------------------------------------
    ("multipart no boundary", "POST", ACCT, multipart(form_part("maxJobs", "2") + b"--XyZ--\r\n", None), 400),
    ("multipart wrong boundary", "POST", ACCT, multipart(form_part("maxJobs", "2", "AbC") + b"--AbC--\r\n"), 400),
    ("multipart truncated", "POST", ACCT, multipart(form_part("email", R_EMAIL)[:30]), 400),
    ("multipart garbage", "POST", ACCT, multipart(b"\x00\xff garbage \r\n\r\n"), 400),
    ("multipart file field", "POST", ACCT, multipart(
        b'--XyZ\r\nContent-Disposition: form-data; name="cookie"; filename="c.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nabc\r\n--XyZ--\r\n"), 400),
    ("multipart missing maxJobs", "POST", ACCT, multipart(
        form_part("email", R_EMAIL) + form_part("password", "p") + b"--XyZ--\r\n"), 400),
    ("multipart maxJobs text", "POST", ACCT, multipart(
        form_part("email", R_EMAIL) + form_part("password", "p") + form_part("maxJobs", "lots") + b"--XyZ--\r\n"),
     400),
    pytest.param("multipart maxJobs 1e309", "POST", ACCT, multipart(
        form_part("email", R_EMAIL) + form_part("password", "p") + form_part("maxJobs", "1e309") + b"--XyZ--\r\n"),
        400),
    pytest.param("acct maxJobs string 1e309", "POST", ACCT, j({**RUN_ACCOUNT, "maxJobs": "1e309"}), 400,),
    ("multipart id mismatch", "POST", ACCT, multipart(
        form_part("email", "x@example.com") + form_part("password", "p") + form_part("maxJobs", "2")
        + b"--XyZ--\r\n"), 400),
    ("multipart 100 fields", "POST", ACCT, multipart(
        b"".join(form_part(f"f{i}", "v") for i in range(100)) + b"--XyZ--\r\n"), 400),
    # -- bodies over 1 MiB -------------------------------------------------------------------------------------
    ("acct body over 1 MiB", "POST", ACCT, j({**RUN_ACCOUNT, "pad": "x" * MIB}), 413),
    ("job body over 1 MiB", "POST", JOB, j({"promptText": "x" * MIB}), 413),
    ("job body over 1 MiB, chunked", "POST", JOB, {"content": chunks(MIB + 10),
                                                    "headers": {"Content-Type": "application/json"}}, 413),
    ("job multipart over 1 MiB", "POST", JOB, multipart(form_part("promptText", "x" * MIB) + b"--XyZ--\r\n"), 413),
    ("job declared length over 1 MiB", "POST", JOB, {"content": b"{}", "headers": {
        "Content-Type": "application/json", "Content-Length": str(MIB + 1)}}, 413),
    # -- generation control fields ---------------------------------------------------------------------------
    ("replyUrl ftp", "POST", JOB, j({"promptText": "a", "replyUrl": "ftp://example.com/x"}), 400),
    ("replyUrl javascript", "POST", JOB, j({"promptText": "a", "replyUrl": "javascript:alert(1)"}), 400),
    ("replyUrl file", "POST", JOB, j({"promptText": "a", "replyUrl": "file:///etc/passwd"}), 400),
    ("replyUrl no scheme", "POST", JOB, j({"promptText": "a", "replyUrl": "example.com/hook"}), 400),
    ("replyUrl no host", "POST", JOB, j({"promptText": "a", "replyUrl": "http://"}), 400),
    ("replyUrl only port", "POST", JOB, j({"promptText": "a", "replyUrl": "https://:8080/x"}), 400),
    ("replyUrl with spaces", "POST", JOB, j({"promptText": "a", "replyUrl": "http://exa mple.com/x"}), 400),
    ("replyUrl with newline", "POST", JOB, j({"promptText": "a", "replyUrl": "http://example.com/\r\nX: y"}), 400),
    ("replyUrl empty", "POST", JOB, j({"promptText": "a", "replyUrl": ""}), 400),
    ("replyUrl int", "POST", JOB, j({"promptText": "a", "replyUrl": 80}), 400),
    ("replyUrl list", "POST", JOB, j({"promptText": "a", "replyUrl": ["http://example.com"]}), 400),
    ("replyUrl 1025 chars", "POST", JOB, j({"promptText": "a", "replyUrl": "http://example.com/" + "a" * 1006}),
     400),
    ("replyUrl 5000 chars", "POST", JOB, j({"promptText": "a", "replyUrl": "https://example.com/" + "a" * 5000}),
     400),
    ("replyRef int", "POST", JOB, j({"promptText": "a", "replyRef": 7}), 400),
    ("replyRef object", "POST", JOB, j({"promptText": "a", "replyRef": {"a": 1}}), 400),
    ("replyRef 2000 chars", "POST", JOB, j({"promptText": "a", "replyRef": "r" * 2000}), 400),
    ("wait maybe", "POST", JOB, j({"promptText": "a", "wait": "maybe"}), 400),
    ("wait 2", "POST", JOB, j({"promptText": "a", "wait": 2}), 400),
    ("wait list", "POST", JOB, j({"promptText": "a", "wait": []}), 400),
    ("pin account int", "POST", JOB, j({"promptText": "a", "email": 12}), 400),
    ("pin account list", "POST", JOB, j({"promptText": "a", "email": [R_EMAIL]}), 400),
    ("pin unknown account", "POST", JOB, j({"promptText": "a", "email": "ghost@example.com"}), 404),
    ("minimax pin unknown", "POST", f"{MM}/video", j({"prompt": "a", "account": "999"}), 404),
    ("riffusion pin unknown", "POST", f"{RIFF}/music", j({"prompt": "a", "user_id": "nobody"}), 404),
    ("compat create maxJobs 1e309", "POST", f"{RUN}/gen3turbo/create", j({"promptText": "a", "maxJobs": "1e309"}),
     400),
    ("compat create maxJobs 0", "POST", f"{RUN}/gen3turbo/create", j({"promptText": "a", "maxJobs": 0}), 400),
    ("compat create replyUrl ftp", "POST", f"{RUN}/gen3turbo/create",
     j({"promptText": "a", "replyUrl": "ftp://example.com"}), 400),
    ("compat create wait query", "POST", f"{RUN}/gen3turbo/create?wait=perhaps", j({"promptText": "a"}), 400),
    ("compat create email int", "POST", f"{RUN}/gen3turbo/create", j({"promptText": "a", "email": 5}), 400),
    ("compat create unknown email", "POST", f"{PIX}/video/create", j({"prompt": "a", "email": "no@x.com"}), 404),
    ("compat create body array", "POST", f"{MM}/videos/create", j([]), 400),
    ("compat riffusion create broken json", "POST", f"{RIFF}/music/create-prompt", raw(b"{"), 400),
    # -- operations and providers ---------------------------------------------------------------------------
    ("operation 201 chars", "POST", f"{RUN}/{'o' * 201}", j({"promptText": "a"}), 400),
    ("operation reserved accounts", "POST", f"{RUN}/accounts/x/y", j({"promptText": "a"}), 404),
    ("operation reserved scheduler", "POST", f"{RUN}/scheduler", j({"promptText": "a"}), 404),
    ("riffusion reserved accounts/id", "POST", f"{RIFF}/accounts/some-id", j({"cookie": "c", "maxJobs": 2}), 404),
    ("unknown provider job", "POST", "/v1/nosuch/gen", j({"prompt": "a"}), 404),
    ("unknown provider accounts", "POST", "/v1/nosuch/accounts", j({"maxJobs": 1}), 404),
    ("unknown provider list", "GET", "/v1/nosuch/accounts", {}, 404),
    ("unknown provider scheduler", "GET", "/v1/nosuch/scheduler/available", {}, 404),
    ("provider under wrong version", "POST", "/v1/pixverse/accounts", j({"maxJobs": 1}), 404),
    ("unknown route", "GET", "/v3/anything", {}, 404),
    ("unknown scheduler view", "GET", f"{RUN}/scheduler/elsewhere", {}, 404),  # unknown GETs: 404, not 405
    # -- unknown ids ------------------------------------------------------------------------------------------
    ("get account unknown", "GET", f"{RUN}/accounts/ghost@example.com", {}, 404),
    ("delete account unknown", "DELETE", f"{RUN}/accounts/ghost@example.com", {}, 404),
    ("get minimax account unknown", "GET", f"{MM}/accounts/999", {}, 404),
    ("delete riffusion account unknown", "DELETE", f"{RIFF}/accounts/00000000-0000-0000-0000-000000000000", {}, 404),
    ("job id word", "GET", "/v1/jobs/nope", {}, 404),
    ("job id short hex", "GET", "/v1/jobs/runwayml-abc", {}, 404),
    ("job id uppercase hex", "GET", f"/v1/jobs/runwayml-{HEX.upper()}", {}, 404),
    ("job id unknown provider", "GET", f"/v1/jobs/nosuch-{HEX}", {}, 404),
    ("job id well formed, absent", "GET", f"/v1/jobs/runwayml-{HEX}", {}, 404),
    ("job id 3000 chars", "GET", "/v1/jobs/" + "x" * 3000, {}, 404),
    ("job id dots", "GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd", {}, 404),
    ("job id NUL", "GET", "/v1/jobs/runwayml-%00", {}, 404),
    ("job id unicode", "GET", "/v1/jobs/%E2%98%83", {}, 404),
    ("cancel unknown job", "DELETE", f"/v1/jobs/runwayml-{HEX}", {}, 404),
    ("cancel malformed job", "DELETE", "/v1/jobs/nope", {}, 404),
    ("runway task unknown", "GET", f"{RUN}/tasks/nope", {}, 404),
    ("runway task other provider's id", "GET", f"{RUN}/tasks/pixverse-{HEX}", {}, 404),
    ("runway task cancel unknown", "DELETE", f"{RUN}/tasks/user:dispatcher-runwayml-task:{HEX}", {}, 404),
    ("pixverse video unknown", "GET", f"{PIX}/videos/123", {}, 404),
    ("minimax video unknown", "GET", f"{MM}/videos/{HEX}", {}, 404),
    ("riffusion music unknown", "GET", f"{RIFF}/music/{HEX}", {}, 404),
    ("riffusion music list without id", "GET", f"{RIFF}/music", {}, 400),
    # -- methods ------------------------------------------------------------------------------------------------
    ("PUT account", "PUT", ACCT, j(RUN_ACCOUNT), 405),
    ("PATCH job", "PATCH", f"/v1/jobs/runwayml-{HEX}", j({}), 405),
    ("POST job read", "POST", f"/v1/jobs/runwayml-{HEX}", j({}), 405),
    ("DELETE accounts list", "DELETE", f"{RUN}/accounts", {}, 405),
    ("PUT scheduler", "PUT", f"{RUN}/scheduler", {}, 405),
]


@pytest.fixture(scope="module")
def configured(redis_url, sandbox_url, tmp_path_factory):
    """One account per provider, set up once for the whole table (the rows change nothing)."""
    import httpx
    import redis
    from cryptography.fernet import Fernet
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app
    from dispatcher.client import Dispatcher
    from dispatcher.settings import Settings

    redis.Redis.from_url(redis_url).flushdb()
    settings = Settings(redis_url=redis_url, upstream_url=sandbox_url, data_dir=tmp_path_factory.mktemp("bad"),
                        api_tokens=(API_TOKEN,), secret_key=Fernet.generate_key().decode(), log_format="json")
    d = Dispatcher(redis_url, settings)
    with httpx.Client(base_url=sandbox_url, timeout=10) as sb:
        sb.post("/_sandbox/reset", json={"seed": 1}).raise_for_status()
        for user in ({"provider": "runwayml", "email": R_EMAIL, "password": SECRETS["run_pw"]},
                     {"provider": "pixverse", "email": P_EMAIL, "password": SECRETS["pix_pw"]},
                     {"provider": "minimax", "account": M_ACCOUNT, "token": SECRETS["mm_token"]},
                     {"provider": "riffusion", "cookie": SECRETS["cookie"]}):
            sb.post("/_sandbox/users", json=user).raise_for_status()
    d.upsert_account("runwayml", RUN_ACCOUNT)
    d.upsert_account("pixverse", {"email": P_EMAIL, "password": SECRETS["pix_pw"], "maxJobs": 2})
    d.upsert_account("minimax", {"account": M_ACCOUNT, "token": SECRETS["mm_token"], "maxJobs": 1})
    d.upsert_account("riffusion", {"cookie": SECRETS["cookie"], "maxJobs": 2})
    raw_client = redis.Redis.from_url(redis_url)  # bytes: RQ's job hashes are not text
    with TestClient(create_app(d), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield client, raw_client
    raw_client.close()
    d.close()


def test_table_is_large_enough():
    assert len(ROWS) >= 100
    assert len({_name(row) for row in ROWS}) == len(ROWS), "row names must be unique"


def _name(row) -> str:
    return row.values[0] if hasattr(row, "values") else row[0]


@pytest.mark.parametrize("name,method,path,kwargs,status", ROWS, ids=[_name(row) for row in ROWS])
def test_malformed_request(configured, snapshot, name, method, path, kwargs, status):
    client, r = configured
    before = snapshot(r)
    res = client.request(method, path, **kwargs)
    assert res.status_code == status, (res.status_code, res.text[:300])
    body = res.json()
    assert set(body) == {"error", "code"}, body
    assert isinstance(body["error"], str) and body["error"] and body["code"] == status, body
    assert snapshot(r) == before, "a refused request changed Redis"
    text = res.text
    assert "Traceback" not in text and 'File "' not in text
    for secret in (*SECRETS.values(), API_TOKEN):
        assert secret not in text
