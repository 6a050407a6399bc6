"""Shared rules over real HTTP: concurrency, idempotency, faults, moderation, credits, expiry, admin."""

from __future__ import annotations

import time

import pytest

ERROR_STATUS = {"401": {401}, "429": {429}, "412": {412}, "596": {596}, "5xx": {500, 502, 503, 504}}


def test_concurrency_429_counts_violations(up, provider):
    h = up.headers(provider, concurrency=2, duration=5, retry_after=3)
    for n in range(2):
        assert up.create(provider, h, {"prompt": f"p{n}"}).status_code == 200
    r = up.create(provider, h, {"prompt": "p3"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    st = up.stats()
    (only,) = st["users"].values()
    assert st["violations"] == 1 and only["violations"] == 1
    assert (only["max_concurrent"], only["running"], only["submitted"]) == (2, 2, 2)


def test_idempotency_replay_is_not_a_duplicate(up, provider):
    h = up.headers(provider)
    a = up.create(provider, h, {"prompt": "same"}, key="key-1")
    b = up.create(provider, h, {"prompt": "same"}, key="key-1")
    assert b.status_code == 200 and up.job_id(provider, a) == up.job_id(provider, b)
    st = up.stats()
    assert st["duplicates"] == 0 and next(iter(st["users"].values()))["submitted"] == 1
    c = up.create(provider, h, {"prompt": "same"}, key="key-2")
    assert c.status_code == 200 and up.job_id(provider, c) != up.job_id(provider, a)
    up.create(provider, h, {"prompt": "same"})  # no key at all
    up.create(provider, h, {"prompt": "different"})
    st = up.stats()
    (only,) = st["users"].values()
    assert st["duplicates"] == 2 and only["duplicates"] == 2 and only["submitted"] == 4


@pytest.mark.parametrize("kind", ["401", "429", "412", "596", "5xx"])
def test_error_faults_on_create_and_poll(up, provider, kind):
    h = up.headers(provider)
    jid = up.job_id(provider, up.create(provider, h, {"prompt": "before faults"}))
    up.user(provider, faults={kind: 1.0}, retry_after=1)
    r = up.create(provider, h, {"prompt": "x"})
    assert r.status_code in ERROR_STATUS[kind]
    if kind == "429":
        assert r.headers["Retry-After"] == "1"
    assert up.poll(provider, h, jid).status_code in ERROR_STATUS[kind]
    st = up.stats()
    (only,) = st["users"].values()
    assert only["submitted"] == 1 and only["faults"] == {kind: 2}
    assert st["violations"] == 0 and st["expired_token_requests"] == 0


def test_slow_fault_delays_then_succeeds(up, provider):
    h = up.headers(provider, faults={"slow": 1.0, "slow_seconds": 0.2})
    t0 = time.perf_counter()
    r = up.create(provider, h, {"prompt": "slow"})
    assert r.status_code == 200 and time.perf_counter() - t0 >= 0.19
    (only,) = up.stats()["users"].values()
    assert only["faults"] == {"slow": 1} and only["submitted"] == 1


def test_moderation_422(up, provider):
    h = up.headers(provider)
    field = "promptText" if provider == "runwayml" else "prompt"
    r = up.create(provider, h, {field: "a [moderated] prompt"})
    assert r.status_code == 422
    r = up.create(provider, h, {"text_prompt": "[moderated]"})
    assert r.status_code == 422
    (only,) = up.stats()["users"].values()
    assert only["submitted"] == 0


def test_credits_412(up, provider):
    h = up.headers(provider, credits=2)
    assert up.create(provider, h, {"prompt": "1"}).status_code == 200
    assert up.create(provider, h, {"prompt": "2"}).status_code == 200
    assert up.create(provider, h, {"prompt": "3"}).status_code == 412
    (only,) = up.stats()["users"].values()
    assert only["credits"] == 0 and only["submitted"] == 2


def test_short_jwt_lifetime_expires(up, provider):
    h = up.headers(provider, jwt_lifetime=0.15)
    assert up.create(provider, h, {"prompt": "ok"}).status_code == 200
    time.sleep(0.2)
    assert up.create(provider, h, {"prompt": "late"}).status_code == 401
    st = up.stats()
    (only,) = st["users"].values()
    assert st["expired_token_requests"] == 1 and only["expired_token_requests"] == 1
    assert only["faults"] == {}


def test_forced_token_expiry(up, provider):
    user = up.user(provider)
    h = up.login(provider, user)
    jid = up.job_id(provider, up.create(provider, h, {"prompt": "ok"}))
    assert up.http.post("/_sandbox/tokens/expire", json={"provider": provider, "id": user["id"]}).status_code == 200
    assert up.poll(provider, h, jid).status_code == 401
    assert up.stats()["expired_token_requests"] == 1
    if provider != "minimax":  # a new login gets a working token again
        h2 = up.login(provider, user)
        assert up.poll(provider, h2, jid).status_code == 200
    r = up.http.post("/_sandbox/tokens/expire", json={"provider": provider, "id": "nobody"})
    assert r.status_code == 404


def test_expired_token_is_401_before_faults(up):
    h = up.headers("runwayml", jwt_lifetime=0.05, faults={"5xx": 1.0})
    time.sleep(0.08)
    assert up.create("runwayml", h, {"prompt": "x"}).status_code == 401
    assert up.user_stats("run@example.com")["faults"] == {}


def test_password_change_keeps_token_valid(up):
    h = up.headers("runwayml")
    r = up.http.patch("/_sandbox/users/runwayml/run@example.com", json={"password": "new", "concurrency": 3})
    assert r.status_code == 200 and r.json()["concurrency"] == 3
    assert up.create("runwayml", h, {"promptText": "still ok"}).status_code == 200
    r = up.http.patch("/_sandbox/users/runwayml/run@example.com", json={"suspended": True})
    r = up.create("runwayml", h, {"promptText": "now not"})
    assert (r.status_code, r.json()) == (401, {"error": "This account has been suspended."})


def test_repost_updates_and_keeps_counters(up):
    h = up.headers("runwayml")
    up.create("runwayml", h, {"promptText": "1"})
    again = up.user("runwayml", password="pw2", concurrency=4)
    assert again["concurrency"] == 4
    assert up.user_stats("run@example.com")["submitted"] == 1
    r = up.http.post("/runwayml/v1/login", json={"email": "run@example.com", "password": "pw2"})
    assert r.status_code == 200


def test_admin_errors(up):
    r = up.http.post("/_sandbox/users", json={"provider": "runwayml"})
    assert r.status_code == 400 and {"error", "code"} <= r.json().keys()
    assert up.http.post("/_sandbox/users", content=b"{not json").status_code == 400
    r = up.http.patch("/_sandbox/users/runwayml/ghost@example.com", json={"concurrency": 1})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    up.user("runwayml")
    r = up.http.patch("/_sandbox/users/runwayml/run@example.com", json={"faults": {"bogus": 1}})
    assert r.status_code == 400


def test_bad_create_body_is_400(up):
    h = up.headers("runwayml")
    assert up.http.post("/runwayml/v1/tasks", json={"options": {}}, headers=h).status_code == 400
    h = up.headers("riffusion")
    r = up.http.post("/riffusion/api/generations", json={"prompt": "x", "sandbox_duration": "long"}, headers=h)
    assert r.status_code == 400


def test_stats_shape_and_reset(up, provider):
    h = up.headers(provider, faults={"429": 0.0})
    up.create(provider, h, {"prompt": "x"})
    st = up.stats()
    assert {"violations", "duplicates", "expired_token_requests", "requests", "logins", "refreshes",
            "users"} <= st.keys()
    assert st["requests"] >= 1
    (only,) = st["users"].values()
    assert only["provider"] == provider
    assert {"max_concurrent", "running", "submitted", "completed", "canceled", "violations", "logins",
            "refreshes", "expired_token_requests", "faults"} <= only.keys()
    assert up.http.post("/_sandbox/reset").status_code == 200
    st = up.stats()
    assert st["users"] == {} and st["requests"] == 0
    assert up.create(provider, h, {"prompt": "x"}).status_code == 401  # user is gone


def test_builtin_media(up):
    gif = up.http.get("/_sandbox/media/anything.gif")
    assert gif.content[:6] == b"GIF89a" and gif.headers["content-type"] == "image/gif"
    wav = up.http.get("/_sandbox/media/anything.wav")
    assert wav.content[:4] == b"RIFF" and wav.headers["content-type"].startswith("audio/")
    assert up.http.get("/_sandbox/media/nothing.mp4").status_code == 404


def test_riffusion_user_id_is_deterministic(up):
    a = up.user("riffusion", cookie="cookie-a")
    up.http.post("/_sandbox/reset")
    b = up.user("riffusion", cookie="cookie-a")
    assert a["id"] == b["id"] == a["user_id"] and len(a["id"]) == 36
