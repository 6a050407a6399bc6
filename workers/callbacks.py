"""`replyUrl` callbacks: POST the generation, signed, retried by RQ with backoff.

Runs as its own RQ job after the slot was released, so a slow or failing
receiver never delays the next generation.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from dispatcher import logging as dlog

from .context import dispatcher

log = dlog.get_logger()
SIGNATURE_HEADER = "X-Dispatcher-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(generation_id: str) -> str:
    d = dispatcher()
    gen = d.generations.find(generation_id)
    if gen is None or not gen.reply_url:
        return "nothing to send"
    body = json.dumps(d.callback_body(gen), separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(d.callback_secret, body)}
    response = httpx.post(gen.reply_url, content=body, headers=headers, timeout=10)
    if response.status_code >= 300:
        log.warning("callback refused", generation_id=generation_id, status=response.status_code)
        raise RuntimeError(f"callback answered {response.status_code}")  # RQ retries with backoff
    return "delivered"
