"""Kling through useapi's `/v1/kling` routes, as useapi answers them (the parts the registry-wide
tests do not cover: its login refusal, its `session` view, its task routes and status numbers)."""

from __future__ import annotations

import time

EMAIL, PASSWORD = "kling-user@example.com", "kling-Pa55-not-shown"


def _user(sandbox, **extra):
    res = sandbox.post("/_sandbox/users", json={"provider": "kling", "email": EMAIL, "password": PASSWORD,
                                                "concurrency": 2, "duration": 0.3, **extra})
    assert res.status_code == 201, res.text


def test_kling_account_login_refusal_session_view_and_maxjobs_range(api, sandbox, snapshot, r):
    _user(sandbox)
    before = snapshot(r)
    refused = api.post("/v1/kling/accounts", json={"email": EMAIL, "password": "wrong", "maxJobs": 2})
    assert refused.status_code == 400
    assert refused.json() == {"error": "Account does not exist or password is incorrect", "code": 400}
    too_many = api.post("/v1/kling/accounts", json={"email": EMAIL, "password": PASSWORD, "maxJobs": 51})
    assert too_many.status_code == 400 and "maxJobs" in too_many.json()["error"]
    assert snapshot(r) == before
    ok = api.post("/v1/kling/accounts", json={"email": EMAIL, "password": PASSWORD, "maxJobs": 50})
    assert ok.status_code == 200, ok.text
    view = api.get(f"/v1/kling/accounts/{EMAIL}").json()
    assert view["email"] == EMAIL and view["maxJobs"] == 50 and view["password"] == "…secured…"
    session = view["session"]
    assert set(session) == {"userId", "ExpireTime", "ExpireTimeUTC"} and session["ExpireTime"] > time.time()
    assert session["ExpireTimeUTC"].endswith("Z") and PASSWORD not in api.get("/v1/kling/accounts").text


def test_kling_tasks_over_useapi_routes(api, sandbox, fleet):
    _user(sandbox)
    assert api.post("/v1/kling/accounts", json={"email": EMAIL, "password": PASSWORD, "maxJobs": 2}).status_code == 200
    created = [api.post("/v1/kling/videos/text2video", json={"prompt": f"a kite {i}", "replyRef": f"r{i}"}).json()
               for i in range(3)]
    assert [c["status_name"] for c in created].count("submitted") == 3 and all(c["task_id"] for c in created)
    available = api.get("/v1/kling/scheduler/available").json()
    assert available["accounts"] == [{"email": EMAIL, "maxJobs": 2, "executing": 2, "available": 0, "eligible": True}]
    assert {row["task_id"] for row in available["executing"]} < {c["task_id"] for c in created}
    assert api.post("/v1/kling/videos/lipsync", json={"prompt": "x"}).status_code == 404  # not an allowed operation
    fleet.start(1)
    deadline = time.monotonic() + 60
    while True:
        tasks = [api.get(f"/v1/kling/tasks/{c['task_id']}").json() for c in created]
        if all(t["status_final"] for t in tasks) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [(t["status"], t["status_name"]) for t in tasks] == [(99, "succeed")] * 3, tasks
    assert all(t["works"][0]["resource"]["resource"].startswith("http://127.0.0.1") for t in tasks)
    assert [t["replyRef"] for t in tasks] == ["r0", "r1", "r2"]
    stats = sandbox.get("/_sandbox/stats", params={"provider": "kling"}).json()
    assert stats["violations"] == 0 and stats["duplicates"] == 0
    assert api.get("/v1/kling/tasks/user:dispatcher-kling-task:0").status_code == 404
