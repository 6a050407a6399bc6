"""Each provider's wire protocol over real HTTP: login, lifecycle, cancel, ownership, upload."""

from __future__ import annotations

import time

import pytest

from dispatcher.sandbox import jwt

SUSPENDED = "This account has been suspended."
WRONG = "Wrong username/password combination."


def test_health(up):
    assert up.http.get("/_sandbox/health").json() == {"ok": True}


def test_runway_login(up):
    up.user("runwayml", jwt_lifetime=100)
    r = up.http.post("/runwayml/v1/login", json={"email": "run@example.com", "password": "pw"})
    assert r.status_code == 200
    claims = jwt.decode_unverified(r.json()["token"])
    assert claims["sub"] == "run@example.com" and isinstance(claims["id"], int)
    assert claims["exp"] - claims["iat"] == pytest.approx(100)
    assert {"jti", "prv"} <= claims.keys()
    r = up.http.post("/runwayml/v1/login", json={"email": "run@example.com", "password": "bad"})
    assert (r.status_code, r.json()) == (401, {"error": WRONG})
    r = up.http.post("/runwayml/v1/login", json={"email": "nobody@example.com", "password": "pw"})
    assert r.status_code == 401
    up.user("runwayml", suspended=True)
    r = up.http.post("/runwayml/v1/login", json={"email": "run@example.com", "password": "pw"})
    assert (r.status_code, r.json()) == (401, {"error": SUSPENDED})
    assert up.stats()["logins"] == 1 and up.user_stats("run@example.com")["logins"] == 1


def test_pixverse_login(up):
    up.user("pixverse", jwt_lifetime=3600)
    r = up.http.post("/pixverse/creative_platform/login", json={"Username": "pix@example.com", "Password": "pw"})
    body = r.json()
    assert r.status_code == 200 and body["ErrCode"] == 0 and body["ErrMsg"] == "success"
    result = body["Resp"]["Result"]
    assert result["Username"] == "pix@example.com" and isinstance(result["AccountId"], int)
    assert result["ExpireTime"] == int(jwt.decode_unverified(result["Token"])["exp"])
    assert abs(result["ExpireTime"] - (time.time() + 3600)) < 5
    r = up.http.post("/pixverse/creative_platform/login", json={"Username": "pix@example.com", "Password": "x"})
    assert r.status_code == 401 and r.json()["ErrCode"] != 0 and r.json()["ErrMsg"] == WRONG
    up.user("pixverse", suspended=True)
    r = up.http.post("/pixverse/creative_platform/login", json={"Username": "pix@example.com", "Password": "pw"})
    assert r.status_code == 401 and r.json()["ErrMsg"] == SUSPENDED


def test_minimax_user_info(up):
    user = up.user("minimax", jwt_lifetime=500, support_music=True)
    r = up.http.get("/minimax/v1/api/user/info", headers={"token": user["token"]})
    body = r.json()
    assert r.status_code == 200 and body["statusInfo"] == {"code": 0, "message": "Success"}
    data = body["data"]
    assert data["userInfo"]["id"] == "mm-1" and data["userInfo"]["isAnonymous"] is False
    assert data["exp"] - data["iat"] == pytest.approx(500)
    assert (data["supportVideo"], data["supportMusic"]) == (True, True)
    r = up.http.get("/minimax/v1/api/user/info", headers={"token": "unknown"})
    assert r.status_code == 401 and r.json()["statusInfo"]["code"] == 401
    up.user("minimax", suspended=True)
    r = up.http.get("/minimax/v1/api/user/info", headers={"token": user["token"]})
    assert r.status_code == 401 and r.json()["statusInfo"]["message"] == SUSPENDED


def test_riffusion_cookie_login_and_refresh_rotation(up):
    user = up.user("riffusion", jwt_lifetime=120)
    url = "/riffusion/auth/v1/token"
    r = up.http.post(f"{url}?grant_type=cookie", json={"cookie": "sb-cookie-1"})
    s = r.json()
    assert r.status_code == 200 and s["token_type"] == "bearer" and s["user"]["id"] == user["user_id"]
    assert s["expires_in"] == 120 and s["expires_at"] == int(jwt.decode_unverified(s["access_token"])["exp"])
    r2 = up.http.post(f"{url}?grant_type=refresh_token", json={"refresh_token": s["refresh_token"]})
    s2 = r2.json()
    assert r2.status_code == 200 and s2["refresh_token"] != s["refresh_token"]
    again = up.http.post(f"{url}?grant_type=refresh_token", json={"refresh_token": s["refresh_token"]})
    assert (again.status_code, again.json()) == (401, {"error": "Invalid Refresh Token: Already Used"})
    h = {"Authorization": f"Bearer {s2['access_token']}"}
    assert up.http.post("/riffusion/api/generations", json={"prompt": "x"}, headers=h).status_code == 200
    r = up.http.post(f"{url}?grant_type=cookie", json={"cookie": "wrong"})
    assert (r.status_code, r.json()) == (401, {"error": "Invalid cookie"})
    up.user("riffusion", suspended=True)
    r = up.http.post(f"{url}?grant_type=refresh_token", json={"refresh_token": s2["refresh_token"]})
    assert r.status_code == 401 and r.json()["error"] == SUSPENDED
    st = up.stats()
    assert (st["logins"], st["refreshes"]) == (1, 1)
    assert up.user_stats(user["user_id"])["refreshes"] == 1


def test_lifecycle_success(up, provider):
    h = up.headers(provider, duration=0.3)
    r = up.create(provider, h, {"prompt": "a cat"})
    assert r.status_code == 200, r.text
    jid = up.job_id(provider, r)
    first = up.job(provider, up.poll(provider, h, jid))
    assert first["status"] == up.expected(provider, "pending") and first["url"] is None
    time.sleep(0.1)
    assert up.job(provider, up.poll(provider, h, jid))["status"] == up.expected(provider, "running")
    time.sleep(0.25)
    done = up.job(provider, up.poll(provider, h, jid))
    assert done["status"] == up.expected(provider, "succeeded") and done["error"] is None
    assert done["url"].startswith(str(up.http.base_url).rstrip("/") + "/_sandbox/media/")
    media = up.http.get(done["url"])
    assert media.status_code == 200
    if provider == "riffusion":
        assert media.content[:4] == b"RIFF" and done["url"].endswith(".wav")
    else:
        assert media.content[:6] == b"GIF89a" and done["url"].endswith(".gif")
    s = up.stats()["users"]
    (only,) = s.values()
    assert (only["submitted"], only["completed"], only["running"], only["max_concurrent"]) == (1, 1, 0, 1)


def test_lifecycle_failure(up, provider):
    h = up.headers(provider, duration=0.05)
    jid = up.job_id(provider, up.create(provider, h, {"prompt": "boom [fail]"}))
    time.sleep(0.08)
    job = up.job(provider, up.poll(provider, h, jid))
    assert job["status"] == up.expected(provider, "failed")
    assert job["error"] == "upstream generation failed" and job["url"] is None


def test_cancel(up, provider):
    h = up.headers(provider, duration=5, concurrency=1)
    jid = up.job_id(provider, up.create(provider, h, {"prompt": "long"}))
    r = up.cancel(provider, h, jid)
    assert r.status_code == 200 and up.job(provider, r)["status"] == up.expected(provider, "canceled")
    assert up.job(provider, up.poll(provider, h, jid))["status"] == up.expected(provider, "canceled")
    assert up.create(provider, h, {"prompt": "next"}).status_code == 200  # the slot was freed
    (only,) = up.stats()["users"].values()
    assert (only["canceled"], only["running"], only["violations"]) == (1, 1, 0)


def test_cancel_finished_job_changes_nothing(up, provider):
    h = up.headers(provider, duration=0.01)
    jid = up.job_id(provider, up.create(provider, h, {"prompt": "quick"}))
    time.sleep(0.03)
    r = up.cancel(provider, h, jid)
    assert r.status_code == 200 and up.job(provider, r)["status"] == up.expected(provider, "succeeded")
    (only,) = up.stats()["users"].values()
    assert only["canceled"] == 0 and only["completed"] == 1


def test_unknown_or_foreign_job_is_404(up, provider):
    h = up.headers(provider)
    jid = up.job_id(provider, up.create(provider, h, {"prompt": "mine"}))
    other = {"runwayml": {"email": "other@example.com"}, "pixverse": {"email": "other@example.com"},
             "minimax": {"account": "mm-2", "token": "other-token"}, "riffusion": {"cookie": "other"}}[provider]
    user2 = up.user(provider, **other)
    if provider == "riffusion":
        r = up.http.post("/riffusion/auth/v1/token?grant_type=cookie", json={"cookie": "other"})
        h2 = {"Authorization": f"Bearer {r.json()['access_token']}"}
    else:
        h2 = up.login(provider, user2)
    assert up.poll(provider, h2, jid).status_code == 404
    assert up.cancel(provider, h2, jid).status_code == 404
    assert up.poll(provider, h, "123456789").status_code == 404


@pytest.mark.parametrize("provider,path,default_ext", [
    ("runwayml", "/runwayml/v1/assets?name=frame.jpg", "jpg"),
    ("pixverse", "/pixverse/creative_platform/media/upload", "png"),
    ("minimax", "/minimax/v1/api/files/upload", "png"),
])
def test_upload_serves_bytes_back(up, provider, path, default_ext):
    h = up.headers(provider)
    data = b"\x89PNG\r\n\x1a\nfake image bytes"
    r = up.http.post(path, content=data, headers={**h, "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    if provider == "pixverse":
        body = body["Resp"]
        assert body["path"].startswith("upload/") and body["path"].endswith(".png")
    elif provider == "minimax":
        body = body["data"]
        assert body["fileID"]
    else:
        assert body["id"]
    assert body["url"].endswith("." + default_ext)
    got = up.http.get(body["url"])
    assert got.content == data and got.headers["content-type"] == "image/png"
    assert up.http.post(path, content=data).status_code == 401
