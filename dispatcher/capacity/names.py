"""The capacity scripts' key names, kept in step with `dispatcher.keys`.

scripts/_pump.lua declares one key (the provider's cap hash) and names the others from its
prefix; keys.py stays the one place names are made, so a name renamed there must fail loudly
here, at start-up, rather than diverge from what the scripts write.
"""

from __future__ import annotations

from .. import keys

# scripts/_pump.lua names each key as the cap key's prefix + a suffix; keys.py stays the
# one place names are made, so a renamed key there must fail loudly here, not diverge
_DERIVED = {
    keys.used: "used", keys.leases: "leases", keys.holder: "holder", keys.cooldown: "cooldown",
    keys.usable_until: "usable", keys.waiting: "waiting", keys.pinned_lines: "pinned_lines",
    keys.started: "started", lambda p: keys.pinned(p, ""): "pinned:",
    keys.lines: "lines", keys.parked_lines: "plines", lambda p: keys.line(p, ""): "line:", keys.enqueued: "enq", keys.generation_tenant: "gten",
    keys.tenant_slots: "trun", keys.tenant_pass: "tpass", keys.policy: "policy", keys.pace: "pace",
    lambda p: keys.starts(p, ""): "starts:", keys.quarantine: "quar", keys.generation_operation: "gop",
    lambda p: keys.generation(p, ""): "gen:",
}


def check_derived_names(provider: str) -> None:
    cap = keys.cap(provider)
    if not cap.endswith(":cap"):
        raise RuntimeError(f"capacity scripts expect the cap key to end in ':cap', got {cap!r}")
    prefix = cap[: -len("cap")]
    for name_of, suffix in _DERIVED.items():
        if name_of(provider) != prefix + suffix:
            raise RuntimeError(f"scripts/_pump.lua derives {prefix + suffix!r} but keys.py names "
                               f"{name_of(provider)!r}: keep them in step")


def parked_lines(provider: str) -> str:
    """set: the parked common sub-lines (`keys.parked_lines`; tests and tools name it here)."""
    return keys.parked_lines(provider)
