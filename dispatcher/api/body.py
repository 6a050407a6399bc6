"""Reading request bodies: JSON or multipart/form-data (as useapi accepts), at most 1 MiB."""

from __future__ import annotations

import json

from starlette.requests import Request

from ..payloads import MAX_PAYLOAD_BYTES
from ..errors import DispatcherError, ValidationError

MAX_BODY = MAX_PAYLOAD_BYTES  # one limit for the HTTP body and the Python API's payload


class PayloadTooLarge(DispatcherError):
    status = 413


class UnsupportedMediaType(DispatcherError):
    status = 415


async def raw_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request) -> dict:
    """The body as a dict of fields; numbers in form fields stay strings (validators coerce)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data = await raw_body(request)
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _form(request, data)
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json or multipart/form-data")
    if not data.strip():
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("Request body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ValidationError("Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValidationError("Request body must be a JSON object")
    return value


def _not_json(constant: str):
    """Python's json reads NaN and ±Infinity; JSON has no such values (and upstreams refuse them)."""
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


async def _form(request: Request, data: bytes) -> dict:
    # Starlette parses from the stream we already consumed: hand it the bytes again.
    async def replay():
        return {"type": "http.request", "body": data, "more_body": False}

    clone = Request(request.scope, replay)
    try:
        form = await clone.form(max_files=4, max_fields=64)
    except Exception:
        raise ValidationError("Request body is not valid form data") from None
    out: dict = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out[key] = value
        else:
            raise ValidationError(f"Unexpected file field {key!r}")
    return out
