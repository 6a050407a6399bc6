"""The provider-shaped endpoints without workers: ids, pinning by asset, uploads, synchronous useapi
codes (429 / 412 / 596 / 404 / 400), and useapi's `scheduler/available` shape."""

from __future__ import annotations

import re

import pytest

from dispatcher.sandbox.media import GIF

HEX = "0123456789abcdef" * 2


def test_ids_are_useapi_style_and_work_everywhere(upstream, live_api, dispatcher):
    upstream.runway("a@example.com", 1)
    pinned = live_api.post("/v1/runwayml/videos/create", json={"email": "a@example.com", "text_prompt": "one"})
    anyone = live_api.post("/v1/runwayml/gen4/video/create", json={"text_prompt": "two"})
    assert pinned.status_code == anyone.status_code == 200
    task_id, other_id = pinned.json()["taskId"], anyone.json()["taskId"]
    assert re.fullmatch(r"user:dispatcher-runwayml:a@example\.com-task:[0-9a-f]{32}", task_id)
    assert re.fullmatch(r"user:dispatcher-runwayml-task:[0-9a-f]{32}", other_id)
    assert dispatcher.get(other_id).operation == "gen4/video/create"

    task = live_api.get(f"/v1/runwayml/tasks/{task_id}").json()
    assert task["taskId"] == task_id and task["status"] == "PENDING" and task["email"] == "a@example.com"
    assert live_api.get(f"/v1/runwayml/tasks/{other_id}").json()["status"] == "THROTTLED"
    generic = live_api.get(f"/v1/jobs/{task_id}")  # the generic job API reads the same generation
    assert generic.status_code == 200 and generic.json()["status"] == "admitted"
    internal = generic.json()["id"]
    assert live_api.get(f"/v1/runwayml/tasks/{internal}").json()["taskId"] == task_id

    for bad in (task_id.replace("a@example.com", "b@example.com"),  # not the account it was pinned to
                f"user:dispatcher-runwayml-task:{HEX}", "nonsense", f"user:dispatcher-pixverse-video:{HEX}"):
        res = live_api.get(f"/v1/runwayml/tasks/{bad}")
        assert res.status_code == 404 and res.json()["code"] == 404, bad
    assert live_api.get(f"/v2/pixverse/videos/{task_id}").status_code == 404  # another provider's id

    canceled = live_api.delete(f"/v1/runwayml/tasks/{other_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELLED"


def test_ids_never_hold_separators_even_for_odd_account_names(upstream, live_api, sandbox):
    email = "o'neil+ops=x&y!@example.com"  # odd but valid: `/`, `%`, `,` are refused at validation (400)
    upstream.user(provider="pixverse", email=email, password="pw")
    assert live_api.post("/v2/pixverse/accounts", json={"email": email, "password": "pw", "maxJobs": 1}).is_success
    res = live_api.post("/v2/pixverse/videos/create", json={"email": email, "prompt": "p", "aspect_ratio": "1:1"})
    video_id = res.json()["video_id"]
    assert not set(video_id) & set(",/%?#'")
    video = live_api.get(f"/v2/pixverse/videos/{video_id}").json()
    assert video["video_id"] == video_id and video["email"] == email and video["video_status_final"] is False


def test_a_runway_asset_pins_the_create_to_its_account(upstream, live_api, dispatcher):
    upstream.runway("a@example.com", 2)
    upstream.runway("b@example.com", 2)
    res = live_api.post("/v1/runwayml/assets/?email=b@example.com&name=frame.gif", content=GIF,
                        headers={"Content-Type": "image/gif"})
    assert res.status_code == 200, res.text
    asset = res.json()["assetId"]
    assert asset.startswith("user:dispatcher-runwayml:b@example.com-asset:")

    for _ in range(3):  # with two free accounts, only the asset's account is ever chosen
        res = live_api.post("/v1/runwayml/gen3turbo/create", json={"image_assetId": asset, "text_prompt": "go"})
        assert res.status_code == 200 and res.json()["email"] == "b@example.com"
        gen = dispatcher.get(res.json()["taskId"])
        assert gen.pinned == "b@example.com" and gen.payload["image_assetId"] == asset.rsplit("-asset:", 1)[1]
    conflict = live_api.post("/v1/runwayml/videos/create", json={"email": "a@example.com", "imageAssetId1": asset})
    assert conflict.status_code == 400 and "b@example.com" in conflict.json()["error"]
    stranger = asset.replace("b@example.com", "c@example.com")
    assert live_api.post("/v1/runwayml/videos/create", json={"imageAssetId1": stranger}).status_code == 404


def test_uploads_answer_each_providers_shape(upstream, live_api, sandbox):
    upstream.pixverse("p@example.com", 1)
    upstream.minimax("424242", 1)
    pix = live_api.post("/v2/pixverse/files/?email=p%40example.com", content=GIF, headers={"Content-Type": "image/gif"})
    assert pix.status_code == 200 and pix.json()["result"][0]["path"]
    mm = live_api.post("/v1/minimax/files/?account=424242", content=GIF, headers={"Content-Type": "image/png"})
    assert mm.status_code == 200 and mm.json()["fileID"]
    uploaded = sandbox.get(pix.json()["result"][0]["url"])
    assert uploaded.content == GIF  # the bytes reached the upstream account

    assert live_api.post("/v1/minimax/files", content=GIF).status_code == 200  # one account: no pin needed
    upstream.minimax("434343", 1)
    res = live_api.post("/v1/minimax/files/", content=GIF)
    assert res.status_code == 400 and "account" in res.json()["error"]
    assert live_api.post("/v1/minimax/files/?account=999", content=GIF).status_code == 404
    assert live_api.post("/v1/minimax/files/?account=424242", content=b"").status_code == 400


def test_create_answers_useapi_codes_it_can_know_at_once(upstream, live_api, dispatcher, r, snapshot):
    upstream.runway("one@example.com", 1)
    first = live_api.post("/v1/runwayml/videos/create", json={"text_prompt": "first"})
    assert first.status_code == 200 and first.json()["status"] == "PENDING"
    before = snapshot(r)
    busy = live_api.post("/v1/runwayml/videos/create", json={"text_prompt": "second", "wait": False})
    assert busy.status_code == 429 and busy.json()["code"] == 429 and busy.headers["Retry-After"]
    assert snapshot(r) == before  # nothing stored for a refused create
    waits = live_api.post("/v1/runwayml/videos/create", json={"text_prompt": "second"})
    assert waits.status_code == 200 and waits.json()["status"] == "THROTTLED"

    for body, needle in (({"email": 5}, "email"), ({"replyUrl": "ftp://x"}, "replyUrl"), ({"maxJobs": 11}, "maxJobs"),
                         ({"wait": "maybe"}, "wait")):
        res = live_api.post("/v1/runwayml/videos/create", json=body)
        assert res.status_code == 400 and needle in res.json()["error"], res.json()
    assert live_api.post("/v1/runwayml/videos/create", json={"maxJobs": 3}).status_code == 200
    res = live_api.post("/v1/runwayml/videos/create", json={"email": "nobody@example.com"})
    assert res.status_code == 404 and res.json()["code"] == 404
    assert live_api.post("/v1/runwayml/videos/create", content=b"[1]",
                         headers={"Content-Type": "application/json"}).status_code == 400


@pytest.mark.parametrize("errors,pinned_code,any_code", [
    (["Out of credits (412): Insufficient credits", "Out of credits (412): Insufficient credits"], 412, 412),
    (["Account on hold (596): Account on hold", "Out of credits (412): Insufficient credits"], 596, 596),
    (["Session refresh failed 2026-01-19T14:31:15.000Z, update the account", None], 596, None),
])
def test_accounts_out_of_rotation_answer_412_or_596(upstream, live_api, dispatcher, errors, pinned_code, any_code):
    upstream.pixverse("x@example.com", 2)
    upstream.pixverse("y@example.com", 2)
    for email, error in zip(("x@example.com", "y@example.com"), errors):
        if error:  # the code a flag carries is the verdict's (health.judge), typed, not read from its text
            dispatcher.core.flag_account("pixverse", email, error, code=412 if error.startswith("Out of credits") else 596)
    res = live_api.post("/v2/pixverse/videos/create", json={"email": "x@example.com", "prompt": "p"})
    assert res.status_code == pinned_code and res.json() == {"error": res.json()["error"], "code": pinned_code}
    assert errors[0] in res.json()["error"]
    res = live_api.post("/v2/pixverse/videos/create", json={"prompt": "p"})
    if any_code is None:  # one account still in rotation: the create goes there
        assert res.status_code == 200 and res.json()["email"] == "y@example.com"
    else:
        assert res.status_code == any_code and res.json()["code"] == any_code


def test_minimax_scheduler_available_has_useapi_shape(upstream, live_api):
    upstream.minimax("200001", 2)
    upstream.minimax("200002", 1)
    created = live_api.post("/v1/minimax/videos/create",
                            json={"account": "200001", "prompt": "p", "replyRef": "r1"}).json()
    body = live_api.get("/v1/minimax/scheduler/available").json()
    assert body["available"] == [{"account": "200001", "maxJobs": 2, "executing": 1, "available": 1},
                                 {"account": "200002", "maxJobs": 1, "executing": 0, "available": 1}] or \
        body["available"] == [{"account": "200002", "maxJobs": 1, "executing": 0, "available": 1},
                              {"account": "200001", "maxJobs": 2, "executing": 1, "available": 1}]
    [row] = body["executing"]
    assert row["videoId"] == created["videoId"] and row["account"] == "200001" and row["replyRef"] == "r1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["started"])
    assert re.fullmatch(r"\d\d:\d\d", row["elapsed"])
    live_api.post("/v1/minimax/videos/create", json={"account": "200002", "prompt": "q"})
    live_api.post("/v1/minimax/videos/create", json={"account": "200001", "prompt": "s"})
    assert live_api.get("/v1/minimax/scheduler/available").json()["available"] == []


def test_riffusion_music_list_needs_an_id(upstream, live_api):
    upstream.riffusion("sb-cookie-for-list-0123456789", 1)
    res = live_api.get("/v1/riffusion/music/")
    assert res.status_code == 400 and "id" in res.json()["error"]
    assert live_api.get("/v1/riffusion/music/", params={"id": f"user:dispatcher-riffusion-job:{HEX}"}).status_code \
        == 404
