"""What deleting an account does to the generations it runs: none is left stranded.

Deleting an account takes it out of rotation first, so nothing new is admitted to it, then
ends every generation holding one of its slots, and only then deletes its record (whose token
the upstream cancel still needs):
- admitted, not yet accepted upstream, not pinned: back to the head of the line for another
  account (as when an account leaves rotation);
- admitted and pinned to it: failed, `Account <id> was deleted` (404), as its pinned waiters are;
- accepted upstream: cancelled there (best effort: the account's stored token), then failed
  with the same reason; its slot is released.
A start step racing the delete finds its record moved on and cancels what it created
(workers/steps.py). Cancel itself always ends a generation (`Dispatcher.cancel`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import keys
from .errors import DispatcherError
from .generations import ADMITTED, FAILED, SUBMITTED
from .logging import get_logger
from .tokens import ensure_token

if TYPE_CHECKING:
    from .core import Core

log = get_logger()


def deleted_message(account_id: str) -> str:
    return f"Account {account_id} was deleted"


def end_running(d: Core, provider: str, account_id: str) -> dict[str, int]:
    """End the generations holding slots of `account_id` (already out of rotation)."""
    held = d.r.hgetall(keys.holder(provider))
    running = sorted(g for g, a in held.items() if a == account_id)
    counts = {"rerouted": 0, "failed": 0}
    for gen in d.generations.many(running) if running else ():
        if gen is None or gen.terminal:
            continue
        if gen.state == ADMITTED and gen.pinned is None:
            d.requeue(gen.id)
            counts["rerouted"] += 1
        elif gen.state in (ADMITTED, SUBMITTED):
            if gen.state == SUBMITTED:
                _cancel_upstream(d, gen)
            if d.generations.move(gen.id, {gen.state}, FAILED, error=deleted_message(account_id), error_code=404):
                d.dispatch(d.capacity(provider).release(gen.id))
                d.finished(gen.id)
                counts["failed"] += 1
    if any(counts.values()):
        log.info("generations of a deleted account ended", provider=provider, account=account_id, **counts)
    return counts


def _cancel_upstream(d: Core, gen) -> None:
    try:
        token = ensure_token(d, gen.provider, gen.account, flagged_ok=True)
        d.adapter(gen.provider).cancel(token, gen.upstream_id)
    except DispatcherError as exc:  # refused, or the token is unusable: the account goes either way
        log.warning("could not cancel upstream for a deleted account", generation_id=gen.id, error=exc.message)
