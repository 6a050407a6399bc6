"""Uploads keep their name and type through the useapi upstream kind too (the sandbox's api.useapi.net
emulation): the file reaches useapi with its `Content-Type` and `?name=`, and is kept as what it is."""

from __future__ import annotations

import secrets

import pytest

from dispatcher.providers.runwayml.shape import parse_asset_id

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


@pytest.fixture
def settings(settings, sandbox, sandbox_url):
    token = "useapi-" + secrets.token_urlsafe(16)
    sandbox.post("/_sandbox/useapi-tokens", json={"token": token}).raise_for_status()
    return settings.with_(upstream="useapi", useapi_url=f"{sandbox_url}/useapi", useapi_token=token)


def _kept(sandbox, upload_id: str) -> tuple[str, bytes]:
    """(content type, bytes) of what the emulation stored under an upload id (its media name is `<id>.<ext>`)."""
    got = sandbox.get(f"/_sandbox/media/{upload_id}.jpeg")
    assert got.status_code == 200, f"not kept as a JPEG: {upload_id}"
    return got.headers["content-type"], got.content


def test_uploads_through_useapi_keep_their_name_and_type(api, sandbox):
    sandbox.post("/_sandbox/users", json={"provider": "runwayml", "email": "via@example.com", "password": "pw"})
    assert api.post("/v1/runwayml/accounts/via@example.com",
                    json={"email": "via@example.com", "password": "pw", "maxJobs": 1}).status_code == 200
    token = sandbox.post("/_sandbox/users", json={"provider": "minimax", "account": "320001"}).json()["token"]
    assert api.post("/v1/minimax/accounts/320001", json={"account": "320001", "token": token, "maxJobs": 1}).is_success

    asset = api.post("/v1/runwayml/assets/?name=frame.jpg", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert asset.status_code == 200, asset.text
    assert asset.json()["name"] == "frame.jpg"
    account, upstream_asset = parse_asset_id(asset.json()["assetId"])  # ours wraps useapi's, which names the account
    assert account == "via@example.com"
    assert _kept(sandbox, upstream_asset.rsplit("-asset:", 1)[1]) == ("image/jpeg", JPEG)

    file = api.post("/v1/minimax/files/", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert file.status_code == 200, file.text
    assert file.json()["name"] == "upload.jpg"
    assert _kept(sandbox, file.json()["fileID"].rsplit("-file:", 1)[1]) == ("image/jpeg", JPEG)
