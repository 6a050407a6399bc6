"""What real useapi clients call, in-process against real Redis and the sandbox: `GET /v2/account`,
404 (not 405) for paths no route serves, only declared operations created, MiniMax images in
their own shape, uploads that keep their name and type, and `GET …/scheduler` in the rows of
`…/scheduler/available`."""

from __future__ import annotations

import re

import pytest

from dispatcher import providers
from dispatcher.errors import NotFound

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def runway(api, sandbox, email="n8n@example.com", max_jobs=2):
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": email, "password": "pw-" + email})
    res = api.post(f"/v1/runwayml/accounts/{email}", json={"email": email, "password": "pw-" + email,
                                                           "maxJobs": max_jobs})
    assert res.status_code == 200, res.text


def minimax(api, sandbox, account="310042", max_jobs=2):
    token = sandbox.post("/_sandbox/users", json={"provider": "minimax", "account": account}).json()["token"]
    res = api.post(f"/v1/minimax/accounts/{account}", json={"account": account, "token": token, "maxJobs": max_jobs})
    assert res.status_code == 200, res.text


def pixverse(api, sandbox, email="pix@example.com"):
    sandbox.post("/_sandbox/users", json={"provider": "pixverse", "email": email, "password": "pw"})
    assert api.post(f"/v2/pixverse/accounts/{email}", json={"email": email, "password": "pw", "maxJobs": 1}).is_success


# -- GET /v2/account --------------------------------------------------------------------------


def test_v2_account_answers_useapis_shape_with_what_the_dispatcher_knows(api, sandbox):
    runway(api, sandbox)
    minimax(api, sandbox)
    res = api.get("/v2/account")
    assert res.status_code == 200, res.text
    body = res.json()
    assert {"name", "email", "sub", "created", "verified", "replyUrl"} <= set(body)  # useapi's model
    assert body["name"] == "dispatcher" and body["replyUrl"] is None
    assert body["apis"]["runwayml"] == {"path": "/v1/runwayml", "accounts": 1, "inRotation": 1, "maxJobs": 2,
                                        "operations": list(providers.get("runwayml").operations)}
    assert body["apis"]["minimax"]["accounts"] == 1 and body["apis"]["kling"]["accounts"] == 0
    assert "pw-n8n@example.com" not in res.text and "token" not in res.text  # no secret, no session
    assert api.get("/v2/account", headers={"Authorization": "Bearer wrong"}).json() == \
        {"error": "Unauthorized", "code": 401}  # a wrong token fails the credential test


# -- 404 for what no route serves; 405 where the path exists ----------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/runwayml/scheduler/elsewhere"), ("GET", "/v1/runwayml/anything/at/all"),
    ("DELETE", "/v1/runwayml/nothing/here"), ("PUT", "/v2/pixverse/x"), ("GET", "/v1/riffusion/music/a/b"),
    ("GET", "/nowhere"), ("PATCH", "/v1/kling/tasks"),
])
def test_paths_no_route_serves_answer_404(api, method, path):
    res = api.request(method, path)
    assert res.status_code == 404 and res.json() == {"error": "Not found", "code": 404}, (method, path, res.text)


@pytest.mark.parametrize("method,path", [
    ("PUT", "/v1/runwayml/scheduler"), ("DELETE", "/v1/runwayml/accounts"), ("POST", "/v1/jobs/x"),
    ("PATCH", "/v1/minimax/videos/abc"),
])
def test_a_path_served_under_another_method_still_answers_405(api, method, path):
    res = api.request(method, path)
    assert res.status_code == 405 and res.json() == {"error": "Method not allowed", "code": 405}, res.text


@pytest.mark.parametrize("method,path,hint", [
    ("GET", "/v1/runwayml/tasks/?offset=0&limit=10", "GET /v1/runwayml/tasks/{taskId}"),
    ("GET", "/v1/runwayml/tasks", "GET /v1/runwayml/scheduler"),
    ("GET", "/v1/runwayml/assets/?offset=0&limit=10", "assetId"),
    ("GET", "/v1/runwayml/assets/user:dispatcher-runwayml:a@b.c-asset:x", "assetId"),
    ("DELETE", "/v1/runwayml/assets/user:dispatcher-runwayml:a@b.c-asset:x", "assetId"),
    ("GET", "/v1/minimax/videos/?limit=10", "GET /v1/minimax/videos/{videoId}"),
    ("GET", "/v1/minimax/images/?limit=10", "GET /v1/minimax/images/{imageId}"),
    ("GET", "/v1/minimax/files/?limit=10&account=1", "fileID"),
])
def test_useapis_library_listings_answer_a_clear_404(api, r, snapshot, method, path, hint):
    before = snapshot(r)
    res = api.request(method, path)
    body = res.json()
    assert res.status_code == 404 and set(body) == {"error", "code"} and body["code"] == 404, res.text
    assert "is not served here" in body["error"] and "library" in body["error"] and hint in body["error"]
    assert snapshot(r) == before


# -- only declared operations ------------------------------------------------------------------


def test_every_provider_declares_its_operations_and_the_demo_submits_one():
    for spec in providers.all_specs():
        assert spec.operations, spec.name
        assert spec.demo is None or spec.demo.operation in spec.operations, spec.name
    assert {"gen3turbo/create", "gen3turbo/video", "lipsync/create", "videos/create"} <= \
        set(providers.get("runwayml").operations)  # what useapi's clients and the n8n node post
    assert {"videos/create", "images/create"} <= set(providers.get("minimax").operations)


@pytest.mark.parametrize("path", ["/v1/runwayml/anything/at/all", "/v1/runwayml/anything/create",
                                  "/v1/minimax/music/create", "/v2/pixverse/videos/delete", "/v1/kling/videos/lipsync"])
def test_an_undeclared_operation_is_refused_with_the_list_and_nothing_stored(api, sandbox, r, snapshot, path):
    runway(api, sandbox)
    minimax(api, sandbox)
    before, upstream_before = snapshot(r), _submitted(sandbox)
    res = api.post(path, json={"promptText": "should never run", "prompt": "x"})
    body = res.json()
    assert res.status_code == 404 and set(body) == {"error", "code"}, res.text
    spec = next(s for s in providers.all_specs() if path.startswith(s.api_prefix + "/"))
    assert body["error"].startswith("Unknown operation") and ", ".join(spec.operations) in body["error"]
    assert snapshot(r) == before, "a refused create wrote to Redis"
    assert _submitted(sandbox) == upstream_before == 0, "a refused create reached the upstream"


def _submitted(sandbox) -> int:
    return sum(user["submitted"] for user in sandbox.get("/_sandbox/stats").json()["users"].values())


def test_the_python_api_refuses_an_undeclared_operation_too(dispatcher, api, sandbox, r, snapshot):
    runway(api, sandbox)
    before = snapshot(r)
    with pytest.raises(NotFound, match="gen3turbo/create"):
        dispatcher.submit("runwayml", "anything/at/all", {"promptText": "x"})
    assert snapshot(r) == before


def test_a_declared_operation_without_create_suffix_runs_as_a_task(api, sandbox, dispatcher):
    runway(api, sandbox)
    res = api.post("/v1/runwayml/gen3turbo/video", json={"text_prompt": "restyle", "seconds": 5})
    assert res.status_code == 200, res.text
    assert res.json()["taskType"] == "gen3turbo/video" and res.json()["status"] == "PENDING"
    assert dispatcher.get(res.json()["taskId"]).operation == "gen3turbo/video"


# -- MiniMax images ---------------------------------------------------------------------------


def test_minimax_images_answer_images_not_videos(api, sandbox):
    minimax(api, sandbox)
    res = api.post("/v1/minimax/images/create", json={"prompt": "a red fox", "aspectRatio": "1:1", "replyRef": "i1"})
    assert res.status_code == 200, res.text
    image = res.json()
    assert "videoId" not in image and re.fullmatch(r"user:dispatcher-minimax-image:[0-9a-f]{32}", image["imageId"])
    assert image["statusLabel"] == "Processing" or image["statusLabel"] == "Queued"
    assert {"status", "statusFinal", "percent", "imageURL", "downloadURL", "replyRef"} <= set(image)
    read = api.get(f"/v1/minimax/images/{image['imageId']}")
    assert read.status_code == 200 and read.json()["imageId"] == image["imageId"]
    assert api.get(f"/v1/minimax/videos/{image['imageId']}").status_code == 404  # an image is not a video

    video = api.post("/v1/minimax/videos/create", json={"prompt": "a fox running"}).json()
    assert "imageId" not in video and video["videoId"].startswith("user:dispatcher-minimax-video:")
    assert api.get(f"/v1/minimax/images/{video['videoId']}").status_code == 404
    rows = api.get("/v1/minimax/scheduler/available").json()["executing"]
    assert {row.get("imageId") or row.get("videoId") for row in rows} == {image["imageId"], video["videoId"]}


# -- uploads keep their name and type ---------------------------------------------------------


def _fetched(sandbox, url):
    got = sandbox.get(url)
    assert got.status_code == 200, url
    return got.headers["content-type"], got.content


def test_uploads_keep_their_file_name_and_content_type(api, sandbox):
    runway(api, sandbox)
    minimax(api, sandbox)
    pixverse(api, sandbox)
    asset = api.post("/v1/runwayml/assets/?name=frame.jpg", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert asset.status_code == 200, asset.text
    assert asset.json()["name"] == "frame.jpg" and asset.json()["url"].endswith(".jpg")
    assert _fetched(sandbox, asset.json()["url"]) == ("image/jpeg", JPEG)

    named = api.post("/v1/runwayml/assets/?name=still", content=PNG, headers={"Content-Type": "image/png"}).json()
    assert named["name"] == "still.png" and _fetched(sandbox, named["url"]) == ("image/png", PNG)  # extension from type

    file = api.post("/v1/minimax/files/?account=310042", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert file.status_code == 200 and file.json()["fileID"], file.text
    assert not file.json()["url"].endswith(".png") and _fetched(sandbox, file.json()["url"]) == ("image/jpeg", JPEG)

    pix = api.post("/v2/pixverse/files/", content=JPEG, headers={"Content-Type": "image/jpeg"}).json()
    assert pix["result"][0]["path"].endswith(".jpg")
    assert _fetched(sandbox, pix["result"][0]["url"]) == ("image/jpeg", JPEG)


# -- GET …/scheduler rows ---------------------------------------------------------------------


def test_scheduler_lists_the_rows_of_scheduler_available(api, sandbox):
    runway(api, sandbox, max_jobs=3)
    shaped = api.post("/v1/runwayml/gen3turbo/create", json={"text_prompt": "a", "replyRef": "r-1",
                                                            "replyUrl": "https://example.com/hook"}).json()
    generic = api.post("/v1/runwayml/gen3a_turbo", json={"promptText": "b"}).json()
    rows = api.get("/v1/runwayml/scheduler").json()
    assert rows == api.get("/v1/runwayml/scheduler/available").json()["executing"] or \
        [r["taskId"] for r in rows] == [r["taskId"] for r in api.get("/v1/runwayml/scheduler/available").json()
                                        ["executing"]]  # elapsed may tick between the two reads
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {"taskId", "email", "started", "elapsed", "replyUrl", "replyRef", "priority", "tenant"}, row
        assert row["email"] == "n8n@example.com" and re.fullmatch(ISO, row["started"])
        assert re.fullmatch(r"\d\d:\d\d", row["elapsed"]) and row["taskId"].startswith("user:dispatcher-runwayml")
    by_id = {row["taskId"]: row for row in rows}
    assert by_id[shaped["taskId"]]["replyRef"] == "r-1"
    generic_public = f"user:dispatcher-runwayml-task:{generic['id'].rpartition('-')[2]}"
    assert generic_public in by_id  # a generation made through the generic route shows its public id too
    assert api.get(f"/v1/runwayml/tasks/{generic_public}").json()["taskId"] == generic_public
