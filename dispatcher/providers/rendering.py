"""Helpers for the provider-shaped status objects (each provider's `shape.py` renders its own).

Pure functions of a `Generation`: no Redis, no HTTP.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..generations import CANCELED, COMPLETED, FAILED, Generation
from .adapter import MODERATED  # noqa: F401 (renderers name it from here)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def elapsed(seconds: float) -> str:
    """useapi's `elapsed`: "MM:SS" (minutes keep counting past 59)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def artifacts(gen: Generation) -> list[str]:
    if gen.state != COMPLETED or not gen.result:
        return []
    return [u for u in gen.result.get("artifacts") or () if isinstance(u, str)]


def failure(gen: Generation) -> tuple[str | None, int | None]:
    """(error, code) of a failed or canceled generation, else (None, None)."""
    if gen.state == FAILED:
        return gen.error or "failed", gen.error_code or 500
    if gen.state == CANCELED:
        return gen.error or "canceled", None
    return None, None


def updated(gen: Generation) -> float:
    return max(t for t in (gen.created, gen.admitted_at, gen.submitted_at, gen.finished_at) if t is not None)


def progress(gen: Generation) -> float:
    """0..1; 1 once completed."""
    return 1.0 if gen.state == COMPLETED else gen.progress


def with_failure(gen: Generation, body: dict) -> dict:
    """`body` with `error` set, and `code` added for a failed generation."""
    error, code = failure(gen)
    body["error"] = error
    if code is not None:
        body["code"] = code
    return body
