"""Runway: accounts by email + password; re-login to refresh; JWT expiry in `exp`."""

from __future__ import annotations

from ...secrets import mask_token, mask_whole
from ..adapter import OCTET_STREAM, Adapter, Poll, Session, json_error, jwt_claims

_STATES = {"PENDING": "pending", "THROTTLED": "pending", "RUNNING": "running",
           "SUCCEEDED": "succeeded", "FAILED": "failed", "CANCELLED": "canceled"}


class RunwayAdapter(Adapter):
    default_base_url = "https://api.runwayml.com"
    path_prefix = "/runwayml"

    def login(self, credentials: dict) -> Session:
        body = self._send("POST", "/v1/login", login=True, error_of=json_error,
                          json={"email": credentials["email"], "password": credentials["password"]})
        token = body["token"]
        claims = jwt_claims(token)
        exp, iat = float(claims.get("exp", 0)), float(claims.get("iat", 0))
        return Session(
            account_id=credentials["email"], token=token, expires_at=exp, issued_at=iat,
            jwt={"token": token, "exp": exp, "iat": iat, "id": claims.get("id")},
        )

    def _auth(self, token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    def create(self, token, operation, payload, idempotency_key):
        body = self._send("POST", "/v1/tasks", error_of=json_error,
                          headers={**self._auth(token), "Idempotency-Key": idempotency_key},
                          json={"taskType": operation, "options": payload})
        return body["task"]["id"]

    def poll(self, token, upstream_id):
        task = self._send("GET", f"/v1/tasks/{upstream_id}", error_of=json_error, headers=self._auth(token))["task"]
        return Poll(
            state=_STATES.get(task.get("status"), "running"),
            progress=float(task.get("progressRatio") or 0),
            artifacts=tuple(a["url"] for a in task.get("artifacts") or ()),
            error=task.get("error"),
        )

    def cancel(self, token, upstream_id):
        self._send("DELETE", f"/v1/tasks/{upstream_id}", error_of=json_error, headers=self._auth(token))

    def upload(self, token, data, name, content_type=OCTET_STREAM):
        body = self._send("POST", "/v1/assets", error_of=json_error, params={"name": name},
                          headers={**self._auth(token), "Content-Type": content_type}, content=data)
        return {"id": body["id"], "url": body.get("url")}


def render_jwt(jwt: dict) -> dict:
    return {**jwt, "token": mask_token(jwt.get("token"))}


def render_credentials(creds: dict) -> dict:
    return {"email": creds.get("email"), "password": mask_whole(creds.get("password"))}
