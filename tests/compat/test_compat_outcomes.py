"""Outcomes through real workers: Riffusion music end to end, signed provider-shaped webhooks, and
upstream refusals (412 out of credits, 422 moderated, 596 on hold) read as useapi's codes."""

from __future__ import annotations

import json

import httpx

from workers.callbacks import LEGACY_SIGNATURE_HEADER, SIGNATURE_HEADER, sign, verify


def test_riffusion_music_and_webhooks_carry_the_status_object(upstream, live_api, fleet, receiver, dispatcher,
                                                               wait_for):
    user_id = upstream.riffusion("sb-access-token=riff-cookie-compat-0123456789", 2, duration=0.5)
    upstream.runway("mod@example.com", 2, duration=0.5)
    fleet.start(1)

    res = live_api.post("/v1/riffusion/music/create-prompt",
                        json={"prompt": "jazzy k-pop song about a distant lover", "instrumental": False,
                              "replyUrl": receiver.url, "replyRef": "order-17"})
    assert res.status_code == 200, res.text
    job_id = res.json()["job_id"]
    assert job_id.startswith("user:dispatcher-riffusion-job:") and res.json()["replyRef"] == "order-17"
    songs = wait_for(lambda: live_api.get("/v1/riffusion/music/", params={"id": job_id}).json(),
                     lambda s: s[0]["status"] in ("completed", "failed"))
    song = songs[0]
    assert song["status"] == "completed" and song["user_id"] == user_id and song["job_id"] == job_id
    audio = httpx.get(song["download_url"])  # no Authorization
    assert audio.is_success and audio.content[:4] == b"RIFF" and audio.content[8:12] == b"WAVE"
    assert live_api.get(f"/v1/riffusion/music/{job_id}").json() == song

    moderated = live_api.post("/v1/runwayml/gen3turbo/create",
                              json={"text_prompt": "[moderated] something", "replyUrl": receiver.url,
                                    "replyRef": "ref-422"}).json()
    task = wait_for(lambda: live_api.get(f"/v1/runwayml/tasks/{moderated['taskId']}").json(),
                    lambda t: t["status"] in ("SUCCEEDED", "FAILED"))
    assert task["status"] == "FAILED" and task["code"] == 422 and task["error"]

    hooks = receiver.wait_for(2)
    by_ref = {json.loads(body)["replyRef"]: (headers, body) for headers, body in hooks}
    for ref, expected in (("order-17", song), ("ref-422", task)):
        headers, body = by_ref[ref]
        assert json.loads(body) == expected  # the very object the status endpoint answers
        lowered = {k.lower(): v for k, v in headers.items()}
        assert verify(dispatcher.core.callback_secret, body, lowered[SIGNATURE_HEADER.lower()])  # t=…,v1=…
        assert lowered[LEGACY_SIGNATURE_HEADER.lower()] == sign(dispatcher.core.callback_secret, body)  # sha256=…


def test_upstream_refusals_read_as_useapi_codes(upstream, live_api, fleet, sandbox, wait_for):
    upstream.runway("broke@example.com", 1, duration=0.5, credits=0)
    upstream.runway("held@example.com", 2, duration=0.5, faults={"596": 1.0})
    upstream.runway("fine@example.com", 2, duration=0.5)

    # two creates on the account without credits: one holds its only slot, one waits behind it
    broke = [live_api.post("/v1/runwayml/videos/create", json={"email": "broke@example.com",
                                                               "text_prompt": f"prompt {i}"}) for i in (1, 2)]
    assert [r.status_code for r in broke] == [200, 200]
    assert [r.json()["status"] for r in broke] == ["PENDING", "THROTTLED"]
    held = live_api.post("/v1/runwayml/videos/create", json={"email": "held@example.com", "text_prompt": "hold"})
    assert held.status_code == 200
    fleet.start(1)

    def final(task_id):
        return wait_for(lambda: live_api.get(f"/v1/runwayml/tasks/{task_id}").json(),
                        lambda t: t["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"))

    for r in broke:  # the waiting one fails with its account, instead of waiting for a re-POST
        task = final(r.json()["taskId"])
        assert task["status"] == "FAILED" and task["code"] == 412 and "credits" in task["error"].lower()
    task = final(held.json()["taskId"])
    assert task["status"] == "FAILED" and task["code"] == 596

    accounts = live_api.get("/v1/runwayml/accounts").json()
    assert accounts["broke@example.com"]["error"] and accounts["held@example.com"]["error"]
    assert "error" not in accounts["fine@example.com"]
    again = live_api.post("/v1/runwayml/videos/create", json={"email": "broke@example.com", "text_prompt": "x"})
    assert again.status_code == 412 and again.json()["code"] == 412 and "credits" in again.json()["error"].lower()
    again = live_api.post("/v1/runwayml/videos/create", json={"email": "held@example.com", "text_prompt": "x"})
    assert again.status_code == 596 and again.json()["code"] == 596

    # without a pin the healthy account takes it
    ok = live_api.post("/v1/runwayml/videos/create", json={"text_prompt": "a calm lake"})
    assert ok.status_code == 200
    task = final(ok.json()["taskId"])
    assert task["status"] == "SUCCEEDED" and task["email"] == "fine@example.com"
    assert sandbox.get("/_sandbox/stats", params={"provider": "runwayml"}).json()["violations"] == 0
