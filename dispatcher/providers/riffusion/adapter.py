"""Riffusion: a browser cookie logs in once; the rotating refresh token keeps the session."""

from __future__ import annotations


from ...secrets import mask_whole
from ..adapter import Adapter, Poll, Session, iso_utc, json_error

_STATES = {"queued": "pending", "running": "running", "complete": "succeeded",
           "failed": "failed", "canceled": "canceled"}


class RiffusionAdapter(Adapter):
    default_base_url = "https://wb.riffusion.com"
    path_prefix = "/riffusion"

    def _session(self, body: dict) -> Session:
        exp = float(body["expires_at"])
        user_id = body["user"]["id"]
        jwt = {"access_token": body["access_token"], "refresh_token": body["refresh_token"],
               "expires_at": body["expires_at"], "expires_in": body["expires_in"],
               "expires_at_UTC": iso_utc(exp), "token_type": body.get("token_type", "bearer"),
               "user": {"id": user_id}}
        return Session(account_id=user_id, token=body["access_token"], expires_at=exp,
                       issued_at=exp - float(body["expires_in"]), jwt=jwt, refresh_token=body["refresh_token"])

    def login(self, credentials: dict) -> Session:
        body = self._send("POST", "/auth/v1/token", login=True, error_of=json_error,
                          params={"grant_type": "cookie"}, json={"cookie": credentials["cookie"]})
        return self._session(body)

    def refresh(self, credentials, session):
        body = self._send("POST", "/auth/v1/token", login=True, error_of=json_error,
                          params={"grant_type": "refresh_token"}, json={"refresh_token": session.refresh_token})
        return self._session(body)

    def _auth(self, token):
        return {"Authorization": f"Bearer {token}"}

    def create(self, token, operation, payload, idempotency_key):
        body = self._send("POST", "/api/generations", error_of=json_error,
                          headers={**self._auth(token), "Idempotency-Key": idempotency_key}, json=payload)
        return body["id"]

    def poll(self, token, upstream_id):
        body = self._send("GET", f"/api/generations/{upstream_id}", error_of=json_error, headers=self._auth(token))
        state = _STATES.get(body.get("status"), "running")
        return Poll(state=state, progress=1.0 if state == "succeeded" else 0.0,
                    artifacts=(body["audio_url"],) if body.get("audio_url") else (), error=body.get("error"))

    def cancel(self, token, upstream_id):
        self._send("DELETE", f"/api/generations/{upstream_id}", error_of=json_error, headers=self._auth(token))


def render_jwt(jwt: dict) -> dict:
    return {**jwt, "access_token": mask_whole(jwt.get("access_token")),
            "refresh_token": mask_whole(jwt.get("refresh_token"))}


def render_credentials(creds: dict) -> dict:
    return {}
