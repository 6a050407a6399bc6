"""What a generation's payload must be to reach an upstream: strict JSON, UTF-8, at most 1 MiB.

Checked at submit (Python API and HTTP alike), so a payload no upstream can receive is
refused with a clear 400 instead of failing in every start step.
"""

from __future__ import annotations

import json

from .errors import ValidationError

MAX_PAYLOAD_BYTES = 1 << 20  # the HTTP API's body limit too (api/body.py)


def upstream_json(payload: dict) -> bytes:
    """The payload as an upstream will receive it: strict JSON in UTF-8. Raises ValidationError
    for what cannot be sent (a lone surrogate, NaN or infinity, a non-JSON type, an integer
    too long to print, nesting deeper than Python's parser), so a poison payload is refused at
    submit instead of failing in every start step."""
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("payload holds text that is not valid Unicode (a lone surrogate, as when "
                              "an emoji is cut in half); nothing was queued") from None
    except (ValueError, TypeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise ValidationError(f"payload cannot be sent upstream as JSON: {reason}") from None


def utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
