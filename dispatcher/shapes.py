"""Provider-shaped views of a generation, answered as useapi answers them.

Pure functions of a `Generation` (no Redis, no HTTP): the provider-shaped job endpoints
(`dispatcher.api.compat`) and the `replyUrl` callbacks render the same object, so a webhook
carries exactly what the provider's status endpoint answers. Each provider's status object,
the words of its ids and its state table live in its folder (`providers/<name>/shape.py`);
this module only finds the shape and its public id.

A generation created through a provider-shaped endpoint carries its shape name in
`extra["shape"]` (the provider name); its public id is the useapi-style alias of its
internal id (`generations.public_id`), with the pinned account embedded.

Every provider maps the dispatcher's states alike: `waiting` (no slot yet: every account
busy, cooling down, or its pinned account full) is useapi's THROTTLED or queued; `admitted`
is pending; `submitted` running; then completed, failed (with `error` and useapi's `code`:
412 out of credits, 422 moderated, 596 account on hold, 5xx upstream failure) or canceled.
"""

from __future__ import annotations

import time

from . import providers
from .generations import Generation, public_id
from .providers.rendering import elapsed, iso


def shape_of(gen: Generation) -> str | None:
    """The shape a generation was created with (None: created through the generic API)."""
    shape = (gen.extra or {}).get("shape")
    return shape if shape in providers.REGISTRY else None


def job_id(gen: Generation, shape: str | None = None) -> str:
    """The id a provider-shaped endpoint answers for this generation."""
    shape = shape or shape_of(gen) or gen.provider
    return public_id(gen.id, providers.get(shape).shape.kind, gen.pinned)


def render(gen: Generation, shape: str | None = None) -> dict:
    """The provider-shaped status object (with `replyRef`), as the status endpoint answers it."""
    shape = shape or shape_of(gen) or gen.provider
    body = providers.get(shape).shape.render(gen, job_id(gen, shape))
    body["replyRef"] = gen.reply_ref
    return body


def scheduler_row(provider: str, id_field: str, item: dict, gen: Generation | None,
                  now: float | None = None) -> dict:
    """One `executing` entry of useapi's `GET …/scheduler/available`:
    `{<id>, <account>, started (ISO), elapsed ("MM:SS"), replyUrl, replyRef}`."""
    now = time.time() if now is None else now
    key = providers.get(provider).shape.id_key
    ident = job_id(gen) if gen is not None and shape_of(gen) else item["id"]
    started = float(item["started"])
    return {key: ident, id_field: item["account"], "started": iso(started), "elapsed": elapsed(now - started),
            "replyUrl": gen.reply_url if gen else None, "replyRef": gen.reply_ref if gen else None}


__all__ = ["shape_of", "job_id", "render", "scheduler_row", "iso", "elapsed"]
