"""Admission in the useapi.net emulation: maxJobs (the account's or the request's), outside jobs,
429 + violations (only when our own jobs filled the account), balancing, the scheduler, duplicate
replyRefs, and the provider's faults passed through."""

from __future__ import annotations

import time

import pytest


def test_429_at_capacity_counts_a_violation(ua, service):
    ident = ua.account(service, 2, user={"duration": 5})
    pin = {ua.PIN[service]: ident}
    for n in range(2):
        assert ua.create(service, prompt=f"p{n}", **pin).status_code == 200
    r = ua.create(service, prompt="p3", **pin)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.json() == {"error": f"Account {ident} is busy executing 2 jobs", "code": 429}
    st = ua.stats()
    assert (st["violations"], st["rejected_429"]) == (1, 1)
    sandbox = ua.http.get("/_sandbox/stats").json()
    assert sandbox["violations"] == 0 and sandbox["users"][ident]["submitted"] == 2


def test_outside_jobs_make_429_without_violation(ua):
    ident = ua.account("runwayml", 2, user={"duration": 5})
    ua.busy("runwayml", ident, 2)
    r = ua.create("runwayml", email=ident)
    assert r.status_code == 429 and r.json()["error"] == f"Account {ident} is busy executing 2 jobs"
    ua.busy("runwayml", ident, 1)
    assert ua.create("runwayml", email=ident).status_code == 200
    assert ua.create("runwayml", email=ident).status_code == 429  # 1 ours + 1 outside
    assert (ua.stats()["violations"], ua.stats()["rejected_429"]) == (0, 2)
    view = ua.get("/v1/runwayml/scheduler/available").json()
    assert view["available"] == [] and len(view["executing"]) == 1  # outside jobs have no rows
    ua.busy("runwayml", ident, 0)
    assert ua.create("runwayml", email=ident).status_code == 200
    assert ua.create("runwayml", email=ident).status_code == 429  # now ours alone: a violation
    assert ua.stats()["violations"] == 1


def test_outside_jobs_for_some_seconds(ua):
    ident = ua.account("pixverse", 1, user={"duration": 5})
    ua.busy("pixverse", ident, 1, seconds=1.0)
    assert ua.create("pixverse", email=ident).status_code == 429
    time.sleep(1.05)
    assert ua.create("pixverse", email=ident).status_code == 200
    assert ua.stats()["violations"] == 0


def test_per_request_max_jobs(ua):
    ident = ua.account("minimax", 1, user={"duration": 5})
    for _ in range(3):
        assert ua.create("minimax", account=ident, maxJobs=3).status_code == 200
    assert ua.create("minimax", account=ident, maxJobs=3).status_code == 429
    assert ua.create("minimax", account=ident, maxJobs=11).status_code == 400
    assert ua.create("minimax", account=ident, maxJobs=0).status_code == 400
    assert ua.stats()["violations"] == 1


def test_slot_frees_when_the_job_ends(ua):
    ident = ua.account("kling", 1, user={"duration": 1.0})
    assert ua.create("kling", email=ident).status_code == 200
    assert ua.create("kling", email=ident).status_code == 429
    time.sleep(1.05)
    assert ua.create("kling", email=ident).status_code == 200


def test_balancing_over_free_accounts(ua):
    emails = [f"r{n}@example.com" for n in range(3)]
    for email in emails:
        ua.account("runwayml", 1, user={"duration": 5, "email": email}, email=email)
    ua.set_error("runwayml", emails[2], "on hold")
    used = [ua.create("runwayml").json()["taskId"].split("-runwayml:")[1].split("-task:")[0] for _ in range(2)]
    assert sorted(used) == emails[:2]  # one each, never the account with an error
    r = ua.create("runwayml")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert ua.stats()["violations"] == 1  # our own jobs fill every healthy account
    assert ua.create("runwayml", email="nobody@example.com").status_code == 404


def test_scheduler(ua, service):
    ident = ua.account(service, 3, user={"duration": 5})
    key, id_field, base = ua.JOB_KEY[service], ua.PIN[service], ua.BASE[service]
    first = ua.job_id(service, ua.create(service, replyUrl="http://127.0.0.1:9/hook", replyRef="gen-1"))
    second = ua.job_id(service, ua.create(service))
    rows = ua.get(f"{base}/scheduler").json()
    assert [row[key] for row in rows] == [first, second]
    assert rows[0][id_field] == ident and rows[0]["elapsed"] == "00:00" and rows[0]["started"].endswith("Z")
    assert (rows[0]["replyUrl"], rows[0]["replyRef"]) == ("http://127.0.0.1:9/hook", "gen-1")
    assert (rows[1]["replyUrl"], rows[1]["replyRef"]) == (None, None)
    view = ua.get(f"{base}/scheduler/available").json()
    assert view["executing"] == rows
    assert view["available"] == [{id_field: ident, "maxJobs": 3, "executing": 2, "available": 1}]
    assert ua.delete(f"{base}/scheduler/{first}").status_code == 204  # stop tracking: the slot frees
    r = ua.delete(f"{base}/scheduler/{first}")
    assert r.status_code == 404 and r.json()["error"] == f"Unable to locate running {key} {first}"
    assert [row[key] for row in ua.get(f"{base}/scheduler").json()] == [second]
    assert ua.get(f"{base}/scheduler/available").json()["available"][0]["available"] == 2
    assert ua.status(service, first).status_code == 200  # the upstream job goes on
    ua.busy(service, ident, 2)
    assert ua.get(f"{base}/scheduler/available").json()["available"] == []  # full accounts are left out


def test_duplicate_reply_ref(ua):
    ident = ua.account("riffusion", 1, user={"duration": 5})
    assert ua.create("riffusion", replyRef="gen-7").status_code == 200
    assert ua.create("riffusion", replyRef="gen-7").status_code == 429  # refused: no second generation
    assert ua.stats()["duplicates"] == 0
    assert ua.create("riffusion", replyRef="gen-7", user_id=ident, maxJobs=2).status_code == 200
    assert ua.create("riffusion", replyRef="gen-8", maxJobs=3).status_code == 200
    assert ua.stats()["duplicates"] == 1


@pytest.mark.parametrize("kind,statuses", [("412", {412}), ("596", {596}), ("5xx", {500, 502, 503, 504}),
                                           ("429", {429}), ("401", {401})])
def test_provider_faults_pass_through(ua, kind, statuses):
    ident = ua.account("runwayml", 2, user={"faults": {kind: 1.0}, "retry_after": 1})
    r = ua.create("runwayml", email=ident)
    assert r.status_code in statuses and r.json()["code"] == r.status_code and r.json()["error"]
    assert r.json()["error"] != "Unauthorized"  # never mistaken for a bad useapi token
    assert ua.get("/v1/runwayml/scheduler").json() == []
    assert (ua.stats()["violations"], ua.stats()["rejected_429"]) == (0, 0)


def test_moderation_and_failures(ua):
    ident = ua.account("minimax", 3, user={"duration": 0.2})
    r = ua.create("minimax", prompt="[moderated] something")
    assert r.status_code == 422 and r.json() == {"error": "Prompt rejected by moderation", "code": 422}
    failed = ua.job_id("minimax", ua.create("minimax", prompt="[fail] a storm", account=ident))
    moderated = ua.job_id("minimax", ua.create("minimax", prompt="[fail] [moderation] a storm"))
    time.sleep(0.25)
    body = ua.status("minimax", failed).json()
    assert (body["status"], body["statusLabel"], body["statusFinal"], body["code"]) == (5, "failed", True, 500)
    assert body["error"] and body["videoURL"] is None and body["downloadURL"] is None
    body = ua.status("minimax", moderated).json()
    assert (body["statusLabel"], body["code"]) == ("moderated", 422)
