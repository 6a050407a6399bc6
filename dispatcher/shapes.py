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


def shape_for(gen: Generation, shape: str | None = None) -> providers.Shape:
    """The `Shape` a generation answers in: its provider's (or `shape`'s), the variant of its
    operation (MiniMax's `images/create` answers images)."""
    return providers.get(shape or shape_of(gen) or gen.provider).shape.for_operation(gen.operation)


def job_id(gen: Generation, shape: str | None = None) -> str:
    """The id a provider-shaped endpoint answers for this generation."""
    return public_id(gen.id, shape_for(gen, shape).kind, gen.pinned)


def render(gen: Generation, shape: str | None = None) -> dict:
    """The provider-shaped status object (with `replyRef`), as the status endpoint answers it."""
    body = shape_for(gen, shape).render(gen, job_id(gen, shape))
    body["replyRef"] = gen.reply_ref
    body["priority"] = gen.priority  # the dispatcher's own (useapi has none), shown beside useapi's fields
    if gen.tenant:
        body["tenant"] = gen.tenant
    return body


def scheduler_row(provider: str, id_field: str, item: dict, gen: Generation | None,
                  now: float | None = None) -> dict:
    """One `executing` entry of useapi's `GET …/scheduler/available` (and of `GET …/scheduler`):
    `{<id>, <account>, started (ISO), elapsed ("MM:SS"), replyUrl, replyRef}`; `item` is a row of
    `Dispatcher.running` (`started` in epoch seconds)."""
    now = time.time() if now is None else now
    key = shape_for(gen).id_key if gen is not None else providers.get(provider).shape.id_key
    ident = job_id(gen) if gen is not None else item["id"]  # the public id, however it was created
    started = float(item["started"])
    return {key: ident, id_field: item["account"], "started": iso(started), "elapsed": elapsed(now - started),
            "replyUrl": gen.reply_url if gen else None, "replyRef": gen.reply_ref if gen else None,
            "priority": gen.priority if gen else None, "tenant": gen.tenant if gen else None}


__all__ = ["shape_of", "shape_for", "job_id", "render", "scheduler_row", "iso", "elapsed"]
