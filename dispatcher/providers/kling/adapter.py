"""Kling's web API, as we read it: not checked against the live service.

Login with email + password (`POST /api/account/login`) gives a bearer token and the session's
`ExpireTime` (epoch seconds); a refresh logs in again. Tasks: `POST /api/task/submit`
`{type, arguments}` → `data.task.id` (a number); `GET /api/task/status?taskId=` →
`data.{status, progress, works[].resource.resource, message}`; `POST /api/task/cancel?taskId=`.
Answers carry `{"result": 1, "data": …}`, errors `{"result": 0, "message": …}`.
"""

from __future__ import annotations

from ...errors import LoginFailed
from ...secrets import mask_whole
from ..adapter import Adapter, Poll, Session, iso_utc

# Kling's task status numbers (5, 10, 50, 99 as its web app shows them; 58 for a canceled task is ours)
STATES = {5: "pending", 10: "running", 99: "succeeded", 50: "failed", 58: "canceled"}
LOGIN_REFUSED = "Account does not exist or password is incorrect"  # useapi's words, with a 400


def _error(response) -> str:
    return response.json().get("message", "")


class KlingAdapter(Adapter):
    default_base_url = "https://klingai.com"
    path_prefix = "/kling"

    def login(self, credentials: dict) -> Session:
        try:
            data = self._send("POST", "/api/account/login", login=True, error_of=_error,
                              json={"email": credentials["email"], "password": credentials["password"]})["data"]
        except LoginFailed:
            raise LoginFailed(LOGIN_REFUSED, status=400) from None
        expires = float(data["ExpireTime"])
        return Session(
            account_id=credentials["email"], token=data["token"], expires_at=expires,
            issued_at=float(data.get("IssueTime") or 0),
            jwt={"userId": data.get("userId"), "ExpireTime": data["ExpireTime"], "ExpireTimeUTC": iso_utc(expires),
                 "token": data["token"]},
        )

    def _auth(self, token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    def create(self, token, operation, payload, idempotency_key):
        data = self._send("POST", "/api/task/submit", error_of=_error,
                          headers={**self._auth(token), "Idempotency-Key": idempotency_key},
                          json={"type": operation, "arguments": payload})["data"]
        return str(data["task"]["id"])

    def poll(self, token, upstream_id):
        data = self._send("GET", "/api/task/status", error_of=_error, params={"taskId": upstream_id},
                          headers=self._auth(token))["data"]
        urls = tuple(w["resource"]["resource"] for w in data.get("works") or ()
                     if isinstance(w.get("resource"), dict) and w["resource"].get("resource"))
        return Poll(state=STATES.get(data.get("status"), "running"), progress=float(data.get("progress") or 0) / 100,
                    artifacts=urls, error=data.get("message"))

    def cancel(self, token, upstream_id):
        self._send("POST", "/api/task/cancel", error_of=_error, params={"taskId": upstream_id},
                   headers=self._auth(token))


def render_jwt(session: dict) -> dict:
    """useapi's `session` object: the user and the expiry; the token stays hidden."""
    return {"userId": session.get("userId"), "ExpireTime": session.get("ExpireTime"),
            "ExpireTimeUTC": session.get("ExpireTimeUTC")}


def render_credentials(creds: dict) -> dict:
    return {"email": creds.get("email"), "password": mask_whole(creds.get("password"))}
