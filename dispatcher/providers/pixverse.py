"""PixVerse: accounts by email + password; re-login to refresh; expiry in `ExpireTime`."""

from __future__ import annotations

from ..secrets import mask_token, mask_whole
from .base import EMAIL_ID, EMAIL_RULE, Adapter, Poll, ProviderSpec, Session, iso_utc, jwt_claims

_STATES = {5: "running", 1: "succeeded", 7: "failed", 8: "failed", 9: "canceled"}


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
        return Poll(state=state, progress=float(resp.get("progress") or 0) / 100,
                    artifacts=(resp["url"],) if resp.get("url") else (),
                    error=resp.get("err_msg") or ("moderated" if resp.get("video_status") == 7 else None))

    def cancel(self, token, upstream_id):
        self._send("POST", f"/creative_platform/video/{upstream_id}/cancel", error_of=_error, headers={"Token": token})

    def upload(self, token, data, name):
        resp = self._send("POST", "/creative_platform/media/upload", error_of=_error,
                          headers={"Token": token, "Content-Type": "application/octet-stream"}, content=data)["Resp"]
        return {"id": resp["path"], "url": resp.get("url")}


def render_jwt(jwt: dict) -> dict:
    return {**jwt, "token": mask_token(jwt.get("token"))}


def render_credentials(creds: dict) -> dict:
    return {"email": creds.get("email"), "password": mask_whole(creds.get("password"))}


SPEC = ProviderSpec(
    name="pixverse", title="PixVerse", api_prefix="/v2/pixverse",
    id_field="email", id_from_login=False, credential_fields=("email", "password"),
    max_jobs=(1, 8), recommended_max_jobs=None, refresh="relogin",
    adapter=PixVerseAdapter, render_jwt=render_jwt, render_credentials=render_credentials,
    id_pattern=EMAIL_ID, id_rule=EMAIL_RULE,
)
