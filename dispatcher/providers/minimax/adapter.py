"""MiniMax (Hailuo): a pasted browser token; it cannot be refreshed, so the account
is flagged before the token expires and the user posts a new one."""

from __future__ import annotations

from ...errors import LoginFailed
from ...secrets import mask_token
from ..adapter import OCTET_STREAM, Adapter, Poll, Session, iso_utc

_STATES = {1: "running", 2: "succeeded", 5: "failed", 7: "canceled"}


def _error(response) -> str:
    return response.json().get("statusInfo", {}).get("message", "")


class MiniMaxAdapter(Adapter):
    default_base_url = "https://hailuoai.video"
    path_prefix = "/minimax"

    def login(self, credentials: dict) -> Session:
        token = credentials["token"]
        data = self._send("GET", "/v1/api/user/info", login=True, error_of=_error, headers={"token": token})["data"]
        user = data.get("userInfo", {})
        exp, iat = float(data["exp"]), float(data.get("iat") or 0)
        if str(user.get("id")) != str(credentials["account"]):
            raise LoginFailed(f"The token belongs to account {user.get('id')}, not {credentials['account']}.")
        return Session(
            account_id=str(credentials["account"]), token=token, expires_at=exp, issued_at=iat,
            jwt={"token": token, "user": user, "exp": exp, "iat": iat,
                 "exp_Expire": iso_utc(exp), "iat_Issued": iso_utc(iat)},
            extra={"supportVideo": bool(data.get("supportVideo")), "supportMusic": bool(data.get("supportMusic"))},
        )

    def refresh(self, credentials, session):
        raise LoginFailed("MiniMax tokens cannot be refreshed; POST the account with a new token.")

    def create(self, token, operation, payload, idempotency_key):
        data = self._send("POST", "/v1/api/multimodal/generate/video", error_of=_error,
                          headers={"token": token, "X-Request-Id": idempotency_key}, json=payload)["data"]
        return str(data["id"])

    def poll(self, token, upstream_id):
        data = self._send("GET", f"/v1/api/multimodal/video/{upstream_id}", error_of=_error,
                          headers={"token": token})["data"]
        url = data.get("downloadURL") or data.get("videoURL")
        return Poll(state=_STATES.get(data.get("status"), "running"), progress=float(data.get("percent") or 0) / 100,
                    artifacts=(url,) if url else (), error=data.get("message"))

    def cancel(self, token, upstream_id):
        self._send("POST", f"/v1/api/multimodal/video/{upstream_id}/cancel", error_of=_error, headers={"token": token})

    def upload(self, token, data, name, content_type=OCTET_STREAM):
        body = self._send("POST", "/v1/api/files/upload", error_of=_error, params={"name": name},
                          headers={"token": token, "Content-Type": content_type}, content=data)["data"]
        return {"id": body["fileID"], "url": body.get("url")}


def render_jwt(jwt: dict) -> dict:
    return {**jwt, "token": mask_token(jwt.get("token"))}


def render_credentials(creds: dict) -> dict:
    return {"account": creds.get("account")}
