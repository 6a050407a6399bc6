"""Pure state logic with an injected clock (no HTTP)."""

from __future__ import annotations

import pytest

from dispatcher.sandbox import jwt
from dispatcher.sandbox.model import BadRequest, riffusion_user_id
from dispatcher.sandbox.state import Reject, Sandbox


def runway(sb: Sandbox, **fields):
    user, _ = sb.upsert_user({"provider": "runwayml", "email": "a@x", "password": "pw", **fields})
    return user


def test_job_phases_follow_the_clock(clock):
    sb = Sandbox(clock)
    user = runway(sb, duration=10)
    job, replay = sb.create_job(user, {"promptText": "cat"})
    assert not replay
    assert job.phase(clock()) == "pending"
    clock.advance(1.0)
    assert job.phase(clock()) == "running" and job.progress(clock()) == pytest.approx(0.1)
    clock.advance(9.0)
    assert job.phase(clock()) == "succeeded" and job.progress(clock()) == 1.0
    stats = sb.stats()["users"]["a@x"]
    assert (stats["running"], stats["completed"], stats["submitted"]) == (0, 1, 1)


def test_sandbox_duration_and_fail_marker(clock):
    sb = Sandbox(clock)
    user = runway(sb)
    job, _ = sb.create_job(user, {"promptText": "x [fail]", "sandbox_duration": 0.5})
    clock.advance(0.5)
    assert job.phase(clock()) == "failed"
    assert sb.stats()["users"]["a@x"]["failed"] == 1


def test_concurrency_limit_counts_violations_and_frees_on_end(clock):
    sb = Sandbox(clock)
    user = runway(sb, concurrency=2, duration=5)
    sb.create_job(user, {"n": 1})
    sb.create_job(user, {"n": 2})
    with pytest.raises(Reject) as err:
        sb.create_job(user, {"n": 3})
    assert err.value.status == 429 and "Retry-After" in err.value.headers
    assert sb.stats()["violations"] == 1 and user.counts["violations"] == 1
    clock.advance(5)
    sb.create_job(user, {"n": 3})
    s = sb.stats()["users"]["a@x"]
    assert s["max_concurrent"] == 2 and s["running"] == 1 and s["completed"] == 2


def test_cancel_frees_slot_and_is_idempotent_on_finished_jobs(clock):
    sb = Sandbox(clock)
    user = runway(sb, concurrency=1, duration=5)
    job, _ = sb.create_job(user, {"n": 1})
    clock.advance(2)
    sb.cancel_job(job)
    assert job.phase(clock()) == "canceled" and job.progress(clock()) == pytest.approx(0.4)
    sb.create_job(user, {"n": 2})  # slot is free again
    clock.advance(10)
    sb.cancel_job(job)
    assert user.counts["canceled"] == 1


def test_idempotency_replay_and_duplicate_payloads(clock):
    sb = Sandbox(clock)
    user = runway(sb)
    a, _ = sb.create_job(user, {"p": 1}, key="k1")
    b, replay = sb.create_job(user, {"p": 1}, key="k1")
    assert replay and b is a
    assert sb.counts["duplicates"] == 0 and user.counts["submitted"] == 1
    sb.create_job(user, {"p": 1}, key="k2")  # same payload, new key: a duplicate
    assert sb.counts["duplicates"] == 1 and user.counts["submitted"] == 2


def test_moderation_and_credits(clock):
    sb = Sandbox(clock)
    user = runway(sb, credits=1)
    with pytest.raises(Reject) as err:
        sb.create_job(user, {"prompt": "a [moderated] b"})
    assert err.value.status == 422 and user.credits == 1
    sb.create_job(user, {"prompt": "ok"})
    with pytest.raises(Reject) as err:
        sb.create_job(user, {"prompt": "ok 2"})
    assert err.value.status == 412 and user.counts["submitted"] == 1


def test_jwt_expiry_and_forced_expiry(clock):
    sb = Sandbox(clock)
    user = runway(sb, jwt_lifetime=60)
    token, claims = sb.mint(user)
    assert sb.authenticate("runwayml", token) is user
    assert claims["exp"] == claims["iat"] + 60 and claims["prv"] == "runwayml"
    clock.advance(60)
    with pytest.raises(Reject) as err:
        sb.authenticate("runwayml", token)
    assert err.value.status == 401 and sb.counts["expired_token_requests"] == 1
    fresh, _ = sb.mint(user)
    sb.expire_tokens("runwayml", "a@x")
    with pytest.raises(Reject):
        sb.authenticate("runwayml", fresh)
    assert user.counts["expired_token_requests"] == 2
    newest, _ = sb.mint(user)
    assert sb.authenticate("runwayml", newest) is user


def test_bad_tokens_are_401_without_counting(clock):
    sb = Sandbox(clock)
    user = runway(sb)
    token, _ = sb.mint(user)
    forged = jwt.mint(jwt.decode_unverified(token), b"other secret")
    for bad in (forged, "garbage", "", token + "x"):
        with pytest.raises(Reject) as err:
            sb.authenticate("runwayml", bad)
        assert err.value.status == 401
    with pytest.raises(Reject):
        sb.authenticate("pixverse", token)  # token of another provider
    assert sb.counts["expired_token_requests"] == 0


def test_password_change_keeps_tokens_suspension_kills_them(clock):
    sb = Sandbox(clock)
    user = runway(sb)
    token, _ = sb.mint(user)
    sb.patch_user("runwayml", "a@x", {"password": "new"})
    assert sb.authenticate("runwayml", token) is user
    with pytest.raises(Reject):
        sb.login_password("runwayml", "a@x", "pw")
    sb.patch_user("runwayml", "a@x", {"suspended": True})
    with pytest.raises(Reject) as err:
        sb.authenticate("runwayml", token)
    assert err.value.message == "This account has been suspended."


def test_minimax_pasted_token_expiry(clock):
    sb = Sandbox(clock)
    user, _ = sb.upsert_user({"provider": "minimax", "account": "m1", "token": "tok", "jwt_lifetime": 30})
    assert sb.authenticate("minimax", "tok") is user and user.token_exp == clock() + 30
    clock.advance(30)
    with pytest.raises(Reject):
        sb.authenticate("minimax", "tok")
    assert user.counts["expired_token_requests"] == 1
    sb.upsert_user({"provider": "minimax", "account": "m1", "token": "tok2"})  # re-paste
    assert sb.authenticate("minimax", "tok2") is user
    with pytest.raises(Reject):
        sb.authenticate("minimax", "tok")  # old token unknown now
    minted, _ = sb.upsert_user({"provider": "minimax", "account": "m2"})  # token minted by the sandbox
    assert jwt.decode_unverified(minted.secret)["sub"] == "m2"


def test_riffusion_identity_and_refresh_rotation(clock):
    sb = Sandbox(clock)
    user, created = sb.upsert_user({"provider": "riffusion", "cookie": "c1"})
    assert created and user.id == riffusion_user_id("c1")
    again, created = sb.upsert_user({"provider": "riffusion", "cookie": "c1", "concurrency": 3})
    assert again is user and not created and user.concurrency == 3
    assert sb.login_cookie("c1") is user
    rt = sb.issue_refresh(user)
    assert sb.refresh(rt) is user
    with pytest.raises(Reject) as err:
        sb.refresh(rt)
    assert err.value.message == "Invalid Refresh Token: Already Used"
    assert sb.counts["refreshes"] == 1 and sb.counts["logins"] == 1


def test_faults_are_seeded_and_counted(clock):
    sb = Sandbox(clock, seed=1)
    user = runway(sb, faults={"429": 1.0, "slow": 1.0, "slow_seconds": 0.5, "retry_after": 7})
    slow, kind = sb.draw_faults(user)
    assert (slow, kind) == (0.5, "429")
    assert sb.fault_reject(user, kind).headers["Retry-After"] == "7"
    assert user.fault_counts == {"slow": 1, "429": 1}
    assert sb.fault_reject(user, "5xx").status in (500, 502, 503, 504)
    half = runway(sb, faults={"5xx": 0.5})
    sb.reset(seed=3)
    half = runway(sb, faults={"5xx": 0.5})
    first = [sb.draw_faults(half)[1] for _ in range(50)]
    sb.reset(seed=3)
    half = runway(sb, faults={"5xx": 0.5})
    assert [sb.draw_faults(half)[1] for _ in range(50)] == first
    assert 5 < first.count("5xx") < 45


@pytest.mark.parametrize("body", [
    {"provider": "nope", "email": "a", "password": "b"},
    {"provider": "runwayml", "email": "a"},
    {"provider": "runwayml", "email": "a", "password": "b", "concurrency": -1},
    {"provider": "runwayml", "email": "a", "password": "b", "faults": {"418": 0.5}},
    {"provider": "runwayml", "email": "a", "password": "b", "faults": {"401": 2}},
    {"provider": "riffusion"},
    {"provider": "minimax", "token": "t"},
])
def test_bad_admin_bodies(clock, body):
    with pytest.raises(BadRequest):
        Sandbox(clock).upsert_user(body)


def test_build_app_uses_the_injected_clock(clock):
    """In-process ASGI app: the fake clock drives token expiry and job completion."""
    import asyncio

    import httpx

    from dispatcher.sandbox import build_app

    async def scenario():
        transport = httpx.ASGITransport(app=build_app(clock=clock))
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as c:
            await c.post("/_sandbox/users", json={"provider": "riffusion", "cookie": "c", "jwt_lifetime": 60,
                                                  "duration": 30})
            s = (await c.post("/riffusion/auth/v1/token?grant_type=cookie", json={"cookie": "c"})).json()
            assert s["expires_at"] == int(clock() + 60)
            h = {"Authorization": f"Bearer {s['access_token']}"}
            jid = (await c.post("/riffusion/api/generations", json={"prompt": "x"}, headers=h)).json()["id"]
            clock.advance(30)
            done = (await c.get(f"/riffusion/api/generations/{jid}", headers=h)).json()
            assert done["status"] == "complete"
            assert done["audio_url"] == f"http://sandbox.test/_sandbox/media/{jid}.wav"
            clock.advance(30)
            assert (await c.get(f"/riffusion/api/generations/{jid}", headers=h)).status_code == 401
            assert (await c.get("/_sandbox/stats")).json()["expired_token_requests"] == 1

    asyncio.run(scenario())
