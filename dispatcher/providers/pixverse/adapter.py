"""PixVerse: accounts by email + password; re-login to refresh; expiry in `ExpireTime`."""

from __future__ import annotations

from ...secrets import mask_token, mask_whole
from ..adapter import MODERATED, OCTET_STREAM, Adapter, Poll, Session, iso_utc, jwt_claims

_STATES = {5: "running", 1: "succeeded", 7: "failed", 8: "failed", 9: "canceled"}
MODERATED_STATUS = 7  # video_status of a video refused by moderation


def _error(response) -> str:
    return response.json().get("ErrMsg", "")


class PixVerseAdapter(Adapter):
    default_base_url = "https://app-api.pixverse.ai"
    path_prefix = "/pixverse"

    def login(self, credentials: dict) -> Session:
        body = self._send("POST", "/creative_platform/login", login=True, error_of=_error,
                          json={"Username": credentials["email"], "Password": credentials["password"]})
        result = body["Resp"]["Result"]
        token, exp = result["Token"], float(result["ExpireTime"])
        iat = float(jwt_claims(token).get("iat", 0))
        return Session(
            account_id=credentials["email"], token=token, expires_at=exp, issued_at=iat,
            jwt={"AccountId": result.get("AccountId"), "ExpireTime": result["ExpireTime"],
                 "ExpireTimeUTC": iso_utc(exp), "Username": result.get("Username"), "token": token},
        )

    def create(self, token, operation, payload, idempotency_key):
        body = self._send("POST", "/creative_platform/video/create", error_of=_error,
                          headers={"Token": token, "Ai-Trace-Id": idempotency_key}, json=payload)
        return str(body["Resp"]["video_id"])

    def poll(self, token, upstream_id):
        resp = self._send("GET", f"/creative_platform/video/{upstream_id}", error_of=_error,
                          headers={"Token": token})["Resp"]
        state = _STATES.get(resp.get("video_status"), "running")
        moderated = resp.get("video_status") == MODERATED_STATUS
        return Poll(state=state, progress=float(resp.get("progress") or 0) / 100,
                    artifacts=(resp["url"],) if resp.get("url") else (),
                    error=resp.get("err_msg") or ("moderated" if moderated else None),
                    error_code=MODERATED if moderated else None)

    def cancel(self, token, upstream_id):
        self._send("POST", f"/creative_platform/video/{upstream_id}/cancel", error_of=_error, headers={"Token": token})

    def upload(self, token, data, name, content_type=OCTET_STREAM):
        resp = self._send("POST", "/creative_platform/media/upload", error_of=_error, params={"name": name},
                          headers={"Token": token, "Content-Type": content_type}, content=data)["Resp"]
        return {"id": resp["path"], "url": resp.get("url")}


def render_jwt(jwt: dict) -> dict:
    return {**jwt, "token": mask_token(jwt.get("token"))}


def render_credentials(creds: dict) -> dict:
    return {"email": creds.get("email"), "password": mask_whole(creds.get("password"))}
