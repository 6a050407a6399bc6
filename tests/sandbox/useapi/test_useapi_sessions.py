"""Provider sessions held by useapi accounts: an expired one is refused (and counted) on create and
status; Riffusion's is renewed by useapi itself, and a failed renewal flags the account; job status
shapes; stats and reset."""

from __future__ import annotations

import re
import time

import httpx

LABEL = {"runwayml": "Runway", "pixverse": "PixVerse", "minimax": "MiniMax", "kling": "Kling",
         "riffusion": "Riffusion"}


def test_expired_session_is_refused_and_counted(ua, service):
    ident = ua.account(service, 3, user={"duration": 5})
    job = ua.job_id(service, ua.create(service))
    ua.http.post("/_sandbox/tokens/expire", json={"provider": service, "id": ident})
    expected = {"error": f"{LABEL[service]} session expired, update the account", "code": 401}
    r = ua.create(service)
    assert (r.status_code, r.json()) == (401, expected)
    r = ua.status(service, job)
    assert (r.status_code, r.json()) == (401, expected)
    assert ua.stats()["expired_token_requests"] == 2
    assert ua.http.get("/_sandbox/stats").json()["expired_token_requests"] == 0  # never sent upstream
    if service == "minimax":  # a pasted token cannot be renewed: paste a fresh one
        fresh = ua.http.patch(f"/_sandbox/users/minimax/{ident}", json={"token": "fresh-minimax-token"})
        assert fresh.status_code == 200
        ua.post_account(service, 3, token="fresh-minimax-token")
    else:
        ua.post_account(service, 3)  # a new login
    assert ua.create(service).status_code == 200 and ua.status(service, job).status_code == 200


def test_session_expires_with_time(ua):
    ua.account("runwayml", 2, user={"jwt_lifetime": 1.0, "duration": 5})
    assert ua.create("runwayml").status_code == 200
    time.sleep(1.05)
    assert ua.create("runwayml").status_code == 401
    assert ua.stats()["expired_token_requests"] == 1


def test_riffusion_renews_its_own_session(ua):
    user_id = ua.account("riffusion", 2, user={"jwt_lifetime": 2.0, "duration": 5})
    before = ua.get(f"/v1/riffusion/accounts/{user_id}").json()["jwt"]
    assert ua.http.get("/_sandbox/stats").json()["refreshes"] == 0
    time.sleep(1.7)  # less than 20 % of the session left
    after = ua.get(f"/v1/riffusion/accounts/{user_id}").json()
    assert after["jwt"]["expires_at_UTC"] != before["expires_at_UTC"] and "error" not in after
    assert ua.http.get("/_sandbox/stats").json()["refreshes"] == 1
    time.sleep(0.3)  # the first session is over by now; the renewed one is not
    job = ua.job_id("riffusion", ua.create("riffusion"))
    assert ua.status("riffusion", job).json()["status"] in ("queued", "running")
    assert ua.stats()["expired_token_requests"] == 0


def test_riffusion_failed_renewal_flags_the_account(ua):
    user_id = ua.account("riffusion", 2, user={"jwt_lifetime": 1.0})
    ua.http.patch(f"/_sandbox/users/riffusion/{user_id}", json={"suspended": True})
    time.sleep(0.85)
    r = ua.create("riffusion", user_id=user_id)
    assert r.status_code == 596
    error = ua.get("/v1/riffusion/accounts").json()[user_id]["error"]
    assert re.fullmatch(r"Session refresh failed \d{4}-\d\d-\d\dT[\d:.]+Z, manual update required", error)
    ua.http.patch(f"/_sandbox/users/riffusion/{user_id}", json={"suspended": False})
    assert "error" not in ua.post_account("riffusion", 2).json()  # re-POST: a fresh login clears it
    assert ua.create("riffusion", user_id=user_id).status_code == 200


FINAL = {"runwayml": lambda b: b["status"] in ("SUCCEEDED", "FAILED"), "pixverse": lambda b: b["video_status_final"],
         "minimax": lambda b: b["statusFinal"], "kling": lambda b: b["status_final"],
         "riffusion": lambda b: b["status"] in ("completed", "failed")}


def _finished(ua, service: str, job: str) -> dict:
    deadline = time.monotonic() + 5
    while True:
        body = ua.status(service, job).json()
        if FINAL[service](body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_status_shapes_and_media(ua, service):
    ua.account(service, 2, user={"duration": 0.3})
    created = ua.create(service, replyRef="ref-1")
    job = ua.job_id(service, created)
    body = _finished(ua, service, job)
    assert body[ua.JOB_KEY[service]] == job and body["replyRef"] == "ref-1"
    url = {"runwayml": lambda: body["artifacts"][0]["url"], "pixverse": lambda: body["url"],
           "minimax": lambda: body["downloadURL"], "kling": lambda: body["works"][0]["resource"]["resource"],
           "riffusion": lambda: body["audio_urls"][0]}[service]()
    assert url.startswith(f"{ua.http.base_url}/_sandbox/media/".replace("//_", "/_"))
    assert httpx.get(url).content[:4] in (b"GIF8", b"RIFF")  # no Authorization: a plain download
    assert "error" not in body or body["error"] is None
    assert ua.status(service, "123456789").status_code == 404
    assert ua.get("/v1/runwayml/scheduler").json() == []


def test_stats_and_reset(ua):
    ua.account("kling", 2)
    st = ua.stats()
    assert set(st) == {"calls", "violations", "expired_token_requests", "duplicates", "rejected_429", "accounts"}
    assert st["accounts"] == 1 and st["calls"] == 1
    assert ua.http.post("/_sandbox/reset", json={}).status_code == 200
    assert ua.get("/v2/account").status_code == 401  # tokens are gone too
    assert ua.stats() == dict.fromkeys(st, 0)
    bad = ua.http.post("/_sandbox/useapi-tokens", json={"token": ""})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_token"
    bad = ua.http.post("/_sandbox/useapi-busy", json={"provider": "nope", "account": "x", "jobs": 1})
    assert bad.status_code == 400
