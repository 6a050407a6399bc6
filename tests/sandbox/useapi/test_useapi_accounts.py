"""The useapi.net emulation's token gate and account routes, per provider: POST logs in against the
sandbox's own emulation, answers with secrets masked; GET map / one; DELETE; errors."""

from __future__ import annotations

import time

import pytest

SECURED = "…secured…"


def test_token_gate(ua):
    assert ua.get("/v2/account").json() == {"email": "sandbox@useapi.example", "name": "sandbox",
                                            "verified": True}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {ua.TOKEN}"}):
        r = ua.http.get("/useapi/v2/account", headers=headers)
        assert (r.status_code, r.json()) == (401, {"error": "Unauthorized", "code": 401})
    r = ua.http.get("/useapi/v1/runwayml/accounts")
    assert r.status_code == 401
    assert ua.get("/v1/nothing/here").json()["code"] == 404
    assert ua.stats()["calls"] == 2  # only authorized calls count


def test_runway_account(ua):
    ua.user("runwayml", jwt_lifetime=600)
    r = ua.post_account("runwayml", 5)
    body = r.json()
    assert r.status_code == 200 and body["email"] == "run@example.com" and body["maxJobs"] == 5
    assert body["password"] == SECURED
    jwt = body["jwt"]
    assert SECURED in jwt["token"] and len(jwt["token"]) == len(SECURED) + 6
    assert jwt["exp"] - jwt["iat"] == pytest.approx(600) and abs(jwt["exp"] - time.time() - 600) < 5
    assert isinstance(jwt["id"], int) and "error" not in body
    assert ua.get("/v1/runwayml/accounts").json() == {"run@example.com": body}
    assert ua.get("/v1/runwayml/accounts/run@example.com").json() == body
    r = ua.post_account("runwayml", 5, password="wrong")
    assert (r.status_code, r.json()) == (401, {"error": "Wrong username/password combination.", "code": 401})
    r = ua.post("/v1/runwayml/accounts/other@example.com", json={"email": "run@example.com", "password": "pw",
                                                                 "maxJobs": 1})
    assert r.status_code == 400 and r.json()["code"] == 400 and "must match" in r.json()["error"]


@pytest.mark.parametrize("max_jobs", [0, 11, "x", None, True, 2.5])
def test_max_jobs_range(ua, max_jobs):
    ua.user("runwayml")
    r = ua.post_account("runwayml", max_jobs)
    assert r.status_code == 400 and r.json()["code"] == 400 and "maxJobs" in r.json()["error"]


def test_max_jobs_upper_bounds(ua):
    for provider, high in (("pixverse", 8), ("kling", 50), ("minimax", 10), ("riffusion", 10)):
        ua.user(provider)
        assert ua.post_account(provider, high + 1).status_code == 400
        assert ua.post_account(provider, high).status_code == 201


def test_pixverse_account(ua):
    ua.user("pixverse")
    body = ua.post_account("pixverse", 3).json()
    assert body["email"] == "pix@example.com" and body["password"] == SECURED and body["maxJobs"] == 3
    jwt = body["jwt"]
    assert set(jwt) == {"AccountId", "ExpireTime", "ExpireTimeUTC", "Username", "token"}
    assert jwt["Username"] == "pix@example.com" and SECURED in jwt["token"] and jwt["ExpireTimeUTC"].endswith("Z")
    assert ua.post_account("pixverse", 3, password="bad").status_code == 401


def test_minimax_account(ua):
    user = ua.user("minimax", jwt_lifetime=3600)
    r = ua.post_account("minimax", 2, url="https://hailuoai.video/")
    body = r.json()
    assert r.status_code == 201 and body["account"] == "mm-1" and body["maxJobs"] == 2
    assert (body["supportVideo"], body["supportMusic"]) == (True, False)
    jwt = body["jwt"]
    assert jwt["token"] == "pas" + SECURED + "n-1" and user["token"] not in r.text
    assert jwt["user"]["id"] == "mm-1" and set(jwt["user"]) == {"id", "deviceID", "name", "isAnonymous"}
    assert jwt["exp"] - jwt["iat"] == pytest.approx(3600) and jwt["exp_Expire"].endswith("Z")
    assert ua.post_account("minimax", 2, token="not-a-token").status_code == 401
    r = ua.post("/v1/minimax/accounts/mm-9", json={"account": "mm-1", "token": user["token"], "maxJobs": 1})
    assert r.status_code == 400


def test_minimax_expired_pasted_token_is_refused(ua):
    ua.user("minimax")
    ua.http.post("/_sandbox/tokens/expire", json={"provider": "minimax", "id": "mm-1"})
    r = ua.post_account("minimax", 1)
    assert r.status_code == 401 and "expired" in r.json()["error"]


def test_kling_account(ua):
    ua.user("kling")
    r = ua.post_account("kling", 50)
    body = r.json()
    assert r.status_code == 201 and body["maxJobs"] == 50 and body["password"] == SECURED
    assert set(body["session"]) == {"userId", "ExpireTime", "ExpireTimeUTC"}
    r = ua.post_account("kling", 5, password="bad")
    assert (r.status_code, r.json()["error"]) == (400, "Account does not exist or password is incorrect")


def test_riffusion_account(ua):
    user = ua.user("riffusion", jwt_lifetime=604800)
    r = ua.post_account("riffusion", 6)
    body = r.json()
    assert r.status_code == 201 and body["user_id"] == user["user_id"] and body["maxJobs"] == 6
    jwt = body["jwt"]
    assert (jwt["access_token"], jwt["refresh_token"], jwt["token_type"]) == (SECURED, SECURED, "bearer")
    assert jwt["expires_in"] == 604800 and jwt["user"] == {"id": user["user_id"]}
    assert "sb-cookie-1" not in r.text
    assert ua.post_account("riffusion", 6, cookie="unknown").status_code == 401


def test_list_get_delete(ua, service):
    r = ua.get(f"{ua.BASE[service]}/accounts")
    assert r.status_code == 404 and r.json()["code"] == 404
    assert r.json()["error"].startswith("Configuration not found. To create configuration use POST /accounts")
    ident = ua.account(service)
    assert list(ua.get(f"{ua.BASE[service]}/accounts").json()) == [ident]
    assert ua.get(f"{ua.BASE[service]}/accounts/{ident}").json()[ua.PIN[service]] == ident
    assert ua.get(f"{ua.BASE[service]}/accounts/nobody").status_code == 404
    assert ua.delete(f"{ua.BASE[service]}/accounts/{ident}").status_code == 204
    assert ua.delete(f"{ua.BASE[service]}/accounts/{ident}").status_code == 404
    assert ua.get(f"{ua.BASE[service]}/accounts").status_code == 404
    assert ua.stats()["accounts"] == 0


def test_error_field_and_repost_clears_it(ua, service):
    ident = ua.account(service)
    ua.set_error(service, ident, "Session refresh failed, manual update required")
    assert ua.get(f"{ua.BASE[service]}/accounts/{ident}").json()["error"].startswith("Session refresh failed")
    r = ua.create(service, **{ua.PIN[service]: ident})
    assert r.status_code == 596 and r.json() == {
        "error": f"Account {ident} has pending error: Session refresh failed, manual update required", "code": 596}
    old = ua.get(f"{ua.BASE[service]}/accounts/{ident}").json()
    time.sleep(0.01)
    again = ua.post_account(service, 3).json()
    assert "error" not in again and again["maxJobs"] == 3 and again != old  # a new login: new session
    assert ua.create(service, **{ua.PIN[service]: ident}).status_code == 200
    bad = ua.http.post("/_sandbox/useapi-accounts/error", json={"provider": service, "account": "x", "error": "e"})
    assert bad.status_code == 404


def test_bad_bodies_answer_400(ua):
    for body in ("not json", "[1, 2]"):
        r = ua.post("/v1/kling/accounts", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == 400
    r = ua.post("/v1/kling/accounts", json={"email": "kling@example.com", "maxJobs": 1})
    assert r.status_code == 400 and "password" in r.json()["error"]


def test_form_bodies_are_accepted(ua):
    ua.user("runwayml")
    r = ua.post("/v1/runwayml/accounts/run@example.com",
                data={"email": "run@example.com", "password": "pw", "maxJobs": "4"})
    assert r.status_code == 200 and r.json()["maxJobs"] == 4
