"""A replay of every request the n8n community node for useapi (`eegejuru/n8n-nodes-useapi`) makes
for our five providers, against the API served over HTTP with the sandbox upstream.

The requests come from the node's source: `nodes/UseApi/UseApi.node.ts` (`execute()`, its
`resource === 'runway'` and `resource === 'minimax'` branches) and the credential tests of
`credentials/UseApiApi.credentials.ts` and `credentials/UseApiMinimax.credentials.ts` (both
`GET https://api.useapi.net/v2/account`). The node has no PixVerse, Riffusion or Kling
operations (its README lists them as "not started yet"), so for those three it calls nothing;
its Midjourney branch (`/v2/jobs/…`) is not one of our providers.

None answers 404 or 405, except the ones in NOT_SERVED: useapi reads those from the provider
account's own library (jobs and files made there or on the website) or runs a synchronous
website call; the dispatcher keeps no library and runs generations only, so they answer a
clear 404 that says so and where to look instead.
"""

from __future__ import annotations

import re

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
EMAIL, MM_ACCOUNT = "n8n-runway@example.com", "310777"

# (the node's operation, method, path, request). `{…}` is filled from earlier answers; `json` is the
# body the node builds, `upload` a raw file with its Content-Type. From nodes/UseApi/UseApi.node.ts.
N8N_CALLS = [
    ("credentials test", "GET", "/v2/account", {}),
    # resource 'runway'
    ("runway createAccount", "POST", f"/v1/runwayml/accounts/{EMAIL}",
     {"json": {"email": EMAIL, "password": "pw-" + EMAIL, "maxJobs": 5}}),
    ("runway uploadAsset", "POST", "/v1/runwayml/assets/?name=first-frame.jpg", {"upload": (JPEG, "image/jpeg")}),
    ("runway uploadAsset (audio)", "POST", "/v1/runwayml/assets/?name=voice.wav",
     {"upload": (b"RIFF0000WAVE", "audio/wav")}),
    ("runway getAssets", "GET", "/v1/runwayml/assets/?offset=0&limit=10&mediaType=image", {}),
    ("runway getAsset", "GET", "/v1/runwayml/assets/{assetId}", {}),
    ("runway gen3TurboCreate", "POST", "/v1/runwayml/gen3turbo/create",
     {"json": {"firstImage_assetId": "{assetId}", "text_prompt": "waves at dusk", "aspect_ratio": "16:9",
               "seconds": 5, "seed": 7, "horizontal": 2, "replyRef": "n8n-1", "maxJobs": 5}}),
    ("runway getTask", "GET", "/v1/runwayml/tasks/{taskId}", {}),
    ("runway getTasks", "GET", "/v1/runwayml/tasks/?offset=0&limit=10&email=" + EMAIL + "&statuses=RUNNING", {}),
    ("runway describeImage", "GET", "/v1/runwayml/frames/describe/{assetId}", {}),
    ("runway textToImage", "GET", ("/v1/runwayml/text_to_image_preview/?text_prompt=a%20fox&style=none"
                                   "&aspect_ratio=16:9"), {}),
    ("runway lipSync", "POST", "/v1/runwayml/lipsync/create",
     {"json": {"image_assetId": "{assetId}", "audio_assetId": "{audioAssetId}", "exploreMode": True}}),
    ("runway videoToVideo", "POST", "/v1/runwayml/gen3turbo/video",
     {"json": {"assetId": "{assetId}", "text_prompt": "as a watercolour", "aspect_ratio": "16:9",
               "structure_transformation": 0.5, "seconds": 5}}),
    ("runway deleteAsset", "DELETE", "/v1/runwayml/assets/{assetId}", {}),
    # resource 'minimax'
    ("minimax createAccount", "POST", f"/v1/minimax/accounts/{MM_ACCOUNT}",
     {"json": {"account": MM_ACCOUNT, "url": "", "token": "{minimaxToken}", "maxJobs": 2}}),
    ("minimax getAccountInfo", "GET", "/v1/minimax/account?includeUsageStats=true", {}),
    ("minimax uploadFile", "POST", f"/v1/minimax/files/?account={MM_ACCOUNT}", {"upload": (JPEG, "image/jpeg")}),
    ("minimax listFiles", "GET", f"/v1/minimax/files/?limit=10&account={MM_ACCOUNT}", {}),
    ("minimax createVideo", "POST", "/v1/minimax/videos/create",
     {"json": {"prompt": "a cat surfing", "fileID": "{fileID}", "model": "I2V-01", "account": MM_ACCOUNT,
               "promptOptimization": True, "replyRef": "n8n-2"}}),
    ("minimax retrieveVideo", "GET", "/v1/minimax/videos/{videoId}", {}),
    ("minimax listVideos", "GET", "/v1/minimax/videos/?limit=10", {}),
    ("minimax createImages", "POST", "/v1/minimax/images/create",
     {"json": {"prompt": "a lighthouse", "model": "image-01", "aspectRatio": "16:9", "quantity": 1}}),
    ("minimax retrieveImage", "GET", "/v1/minimax/images/{imageId}", {}),
    ("minimax listImages", "GET", "/v1/minimax/images/?limit=10", {}),
]
N8N_CALLS_BY_PROVIDER = {"pixverse": [], "riffusion": [], "kling": []}  # the node has no such operations

# What answers a clear 404, and why: useapi reads these from the provider account's own library
# (including jobs and files made on the website) or runs a synchronous website call; the
# dispatcher keeps no library of the upstream account and runs generations only.
NOT_SERVED = {
    "runway getAssets": "lists the Runway account's asset library",
    "runway getAsset": "reads one asset from the Runway account's library (an upload answers its assetId and url)",
    "runway deleteAsset": "deletes from the Runway account's library",
    "runway getTasks": "lists the Runway account's task history (one task: getTask; running: GET …/scheduler)",
    "runway describeImage": "a synchronous Runway website call, not a generation",
    "runway textToImage": "a synchronous Runway website preview, not a generation",
    "minimax listFiles": "lists the MiniMax account's uploaded files",
    "minimax listVideos": "lists the MiniMax account's video library (one video: retrieveVideo)",
    "minimax listImages": "lists the MiniMax account's image library (one image: retrieveImage)",
}


def _fill(value, known: dict):
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: known[m[1]], value)
    if isinstance(value, dict):
        return {k: _fill(v, known) for k, v in value.items()}
    return value


def _remember(name: str, body, known: dict) -> None:
    """Ids from answers, as the next calls of a workflow use them."""
    if not isinstance(body, dict):
        return
    if name == "runway uploadAsset":
        known["assetId"] = body["assetId"]
    elif name == "runway uploadAsset (audio)":
        known["audioAssetId"] = body["assetId"]
    for key in ("taskId", "fileID", "videoId", "imageId"):
        if key in body and key not in known:
            known[key] = body[key]


def _replay(live_api, known: dict) -> dict:
    results = {}
    for name, method, path, request in N8N_CALLS:
        kwargs = {}
        if "json" in request:
            kwargs["json"] = _fill(request["json"], known)
        if "upload" in request:
            data, content_type = request["upload"]
            kwargs.update(content=data, headers={"Content-Type": content_type})
        res = live_api.request(method, _fill(path, known), **kwargs)
        results[name] = res
        _remember(name, res.json(), known)
    return results


def test_the_n8n_nodes_requests_are_all_answered(upstream, live_api, sandbox):
    upstream.user(provider="runwayml", email=EMAIL, password="pw-" + EMAIL)
    known = {"minimaxToken": upstream.user(provider="minimax", account=MM_ACCOUNT)["token"]}
    results = _replay(live_api, known)
    assert set(N8N_CALLS_BY_PROVIDER) | {"runwayml", "minimax"} == {"runwayml", "pixverse", "minimax", "riffusion",
                                                                      "kling"}
    for name, res in results.items():
        if name in NOT_SERVED:
            body = res.json()
            assert res.status_code == 404 and body["code"] == 404 and "is not served here" in body["error"], name
            continue
        assert res.status_code not in (404, 405), (name, res.status_code, res.text)
        assert res.status_code == 200, (name, res.status_code, res.text)

    account = results["credentials test"].json()
    assert account["name"] == "dispatcher" and account["apis"]["runwayml"]["path"] == "/v1/runwayml"
    task = results["runway gen3TurboCreate"].json()
    assert task["email"] == EMAIL and task["taskType"] == "gen3turbo/create" and task["replyRef"] == "n8n-1"
    assert results["runway getTask"].json()["taskId"] == task["taskId"]
    assert results["runway lipSync"].json()["taskType"] == "lipsync/create"
    assert results["runway videoToVideo"].json()["taskType"] == "gen3turbo/video"
    asset = results["runway uploadAsset"].json()
    assert asset["name"] == "first-frame.jpg" and sandbox.get(asset["url"]).headers["content-type"] == "image/jpeg"
    assert results["minimax getAccountInfo"].json()[MM_ACCOUNT]["account"] == MM_ACCOUNT
    video, image = results["minimax createVideo"].json(), results["minimax createImages"].json()
    assert video["videoId"] == results["minimax retrieveVideo"].json()["videoId"] and "imageId" not in video
    assert image["imageId"] == results["minimax retrieveImage"].json()["imageId"] and "videoId" not in image
    uploaded = results["minimax uploadFile"].json()
    assert uploaded["fileID"] and sandbox.get(uploaded["url"]).headers["content-type"] == "image/jpeg"
