"""useapi's provider-shaped job endpoints: code written for useapi.net runs here by changing its base URL.

Each provider folder declares where useapi serves its jobs and what they answer
(`providers/<name>/shape.py`: create, status, cancel, list and upload routes, the status
object, the words of its ids); `compat_routes.py` mounts those routes, and this module does
their work, the same for every provider.

A create answers 200 at once with the provider-shaped status object (its id
included), backed by a generation like every other. Admission is asynchronous:
with every slot busy the generation waits and reads THROTTLED (Runway; QUEUED,
Queued, queued elsewhere), and an upstream refusal met later (422 moderated, 412
out of credits, 596 on hold) shows in the status object as FAILED with `error`
and `code`. A create answers useapi's codes itself only when it can know at
once: 429 when the caller sent `"wait": false` and nothing is free, 412/596
when the pinned account (or every account) is out of rotation with that error,
404 for an unknown account. These generations are `fail_fast`: one pinned to an
account that leaves rotation fails with that account's code instead of waiting
for a re-POST, as useapi answers.

The account pin is useapi's (the provider's id field); a provider's `Shape.prepare` may
move the pin (Runway: a create naming an asset runs on the asset's account). `maxJobs` on
a create is validated and not applied: the account's stored `maxJobs` governs admission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mimetypes
import re

from starlette.requests import Request

from .. import keys, shapes
from ..accounts import ON_HOLD, OUT_OF_CREDITS, not_found_message
from ..errors import DispatcherError, NotFound, ValidationError
from ..generations import internal_id
from ..providers import ProviderSpec, Shape
from .jobs import parse_priority, parse_wait

if TYPE_CHECKING:
    from dispatcher.client import Dispatcher

UPLOAD_LIMIT = 20 << 20  # bytes of one uploaded file
OCTET_STREAM = "application/octet-stream"
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_TYPES = mimetypes.MimeTypes(filenames=())  # Python's own table only: the same on every machine


# -- the work, run in a thread (the core is synchronous) -------------------------------


def _optional_str(body: dict, name: str) -> str | None:
    value = body.pop(name, None)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"Parameter {name} must be a string")
    return value


def _check_max_jobs(spec: ProviderSpec, value) -> None:
    if value is None or value == "":
        return
    low, high = spec.max_jobs
    try:
        ok = not isinstance(value, bool) and float(value) == int(float(value)) and low <= int(float(value)) <= high
    except (TypeError, ValueError, OverflowError):  # "1e309" is inf: int() overflows
        ok = False
    if not ok:
        raise ValidationError(f"Parameter maxJobs must be an integer between {low} and {high}, got {value!r}")


def refuse_out_of_rotation(d: Dispatcher, spec: ProviderSpec, pin: str | None) -> None:
    """useapi answers a create for an account that left rotation with its code (412 / 596).

    Reads plain fields only (nothing is decrypted), and in the usual case, some account in
    rotation, a constant number of them however many accounts there are."""
    if pin is not None:
        account = d.core.accounts.summary(spec.name, pin)
        if account is not None and account.error:  # unknown: submit answers 404
            raise DispatcherError(f"Account {pin}: {account.error}", status=account.error_code)
        return
    if _one_in_rotation(d, spec):
        return
    accounts = d.core.accounts.summaries(spec.name)
    if accounts and all(a.error for a in accounts):
        codes = {a.error_code for a in accounts}
        reasons = "; ".join(f"{a.id}: {a.error}" for a in accounts)
        raise DispatcherError(f"No account is in rotation ({reasons})",
                              status=OUT_OF_CREDITS if codes == {OUT_OF_CREDITS} else ON_HOLD)


def _one_in_rotation(d: Dispatcher, spec: ProviderSpec) -> bool:
    """True when a random account of the capacity table (the accounts without a flag) shows no
    error on its record either: then not every account is out of rotation. False says nothing
    (no account, or one caught between its flag and leaving the table): read them all."""
    account = d.core.r.hrandfield(keys.cap(spec.name))
    found = d.core.accounts.summary(spec.name, account) if account is not None else None
    return found is not None and not found.error


def create(d: Dispatcher, spec: ProviderSpec, operation: str, body: dict, query_wait,
           tenant: str | None = None) -> dict:
    """`tenant`: the one the caller's API token names (`DISPATCHER_API_TOKENS` "tenant:token")."""
    payload = dict(body)
    priority = parse_priority(payload.pop("priority", None))
    pin = _optional_str(payload, spec.id_field)
    reply_url = _optional_str(payload, "replyUrl")
    reply_ref = _optional_str(payload, "replyRef")
    reply_queue = payload.pop("replyQueue", None)  # checked by submit (DISPATCHER_REPLY_QUEUES)
    wait = parse_wait(payload.pop("wait", query_wait))
    _check_max_jobs(spec, payload.pop("maxJobs", None))
    if spec.shape.prepare is not None:
        payload, pin = spec.shape.prepare(payload, pin)
    refuse_out_of_rotation(d, spec, pin)
    handle = d.submit(spec.name, operation, payload, account=pin, reply_url=reply_url, reply_ref=reply_ref,
                      reply_queue=reply_queue, wait=wait, priority=priority, tenant=tenant, extra={"shape": spec.name, "fail_fast": True})
    return shapes.render(handle.refresh())


def find(d: Dispatcher, spec: ProviderSpec, job_id: str, shape: Shape | None = None):
    """The generation behind a provider-shaped id (or an internal id of that provider) that
    answers in `shape` (the provider's main one by default: a MiniMax image is not a video), else 404."""
    shape = shape or spec.shape
    gen = d.core.generations.find(job_id)
    if (gen is None or gen.provider != spec.name or shapes.shape_for(gen, spec.name) is not shape
            or (internal_id(job_id) != job_id and shapes.job_id(gen, spec.name) != job_id)):
        raise NotFound(f"{shape.noun} {job_id} not found")
    return gen


def status(d: Dispatcher, spec: ProviderSpec, job_id: str, shape: Shape | None = None) -> dict:
    return shapes.render(find(d, spec, job_id, shape), spec.name)


def cancel(d: Dispatcher, spec: ProviderSpec, job_id: str, shape: Shape | None = None) -> dict:
    gen = find(d, spec, job_id, shape)
    return shapes.render(d.cancel(gen.id), spec.name)


def upload(d: Dispatcher, spec: ProviderSpec, account: str | None, data: bytes, name: str,
           content_type: str = OCTET_STREAM) -> tuple[str, dict]:
    if not data:
        raise ValidationError("Request body is empty: send the file's bytes")
    if not account:
        ids = d.core.accounts.ids(spec.name)
        if not ids:
            raise NotFound(not_found_message(spec))
        if len(ids) > 1:
            raise ValidationError(f"Parameter {spec.id_field} is required when more than one account is configured")
        account = ids[0]
    found = d.core.accounts.summary(spec.name, account)
    if found is None:
        raise NotFound(not_found_message(spec))
    if found.error:
        raise DispatcherError(f"Account {account}: {found.error}", status=found.error_code)
    return account, d.upload(spec.name, account, data, name, content_type)


def media_type(request: Request) -> str:
    """The upload's MIME type as the caller declared it (`Content-Type`), else octet-stream."""
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return declared if len(declared) <= 100 and _MIME.fullmatch(declared) else OCTET_STREAM


def file_name(request: Request, content_type: str = OCTET_STREAM) -> str:
    """`?name=` made path-safe, with the extension of its type when it has none (useapi adds it
    from the type); without a name, `upload.<extension of the type>`."""
    name = _NAME.sub("_", (request.query_params.get("name") or "").rsplit("/", 1)[-1])[:200].strip("._")
    ext = _extension(content_type)
    if not name:
        return f"upload{ext or '.bin'}"
    return name if "." in name or not ext else name + ext


def _extension(content_type: str) -> str | None:
    """`.jpg` for image/jpeg…; a short plain subtype (`.webp`) when Python's table has none."""
    if content_type == OCTET_STREAM:
        return None
    subtype = content_type.partition("/")[2]
    return _TYPES.guess_extension(content_type) or (f".{subtype}" if subtype.isalnum() and len(subtype) <= 8 else None)
