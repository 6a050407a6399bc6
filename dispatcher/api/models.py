"""Response models of the OpenAPI document, so that clients generated from it are typed.

They document what the routes answer; the routes build their answers themselves (the status
objects in each provider's `shape.py`, accounts in `dispatcher.accounts`). Every model allows
fields it does not name, as useapi adds fields over time. Provider-dependent ones (an account's
id field, a scheduler row's id key) are built once per provider from its spec.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from ..providers import ProviderSpec

OPEN = ConfigDict(extra="allow")


class Error(BaseModel):
    """Every error: `{"error": <message>, "code": <HTTP status>}`."""

    error: str
    code: int


class Health(BaseModel):
    ok: bool


class UseapiAccount(BaseModel):
    """useapi's `GET /v2/account` (its fields, as far as the dispatcher knows them), and what this
    dispatcher serves: per provider its path and how many accounts it has, in rotation or not."""

    model_config = OPEN
    name: str
    email: str | None = None
    sub: str | None = None
    created: str | None = None
    verified: str | None = None
    replyUrl: str | None = None
    apis: dict[str, "ApiSummary"] = {}


class ApiSummary(BaseModel):
    path: str
    accounts: int
    inRotation: int
    maxJobs: int
    operations: list[str]


UseapiAccount.model_rebuild()


class Job(BaseModel):
    """A generation record as the generic job endpoints answer it (`/v1/jobs/{id}`); times are
    epoch seconds."""

    model_config = OPEN
    id: str
    status: str  # waiting, admitted, submitted, completed, failed, canceled
    provider: str
    operation: str
    account: str | None = None
    pinned: str | None = None
    upstreamId: str | None = None
    created: float | None = None
    admitted: float | None = None
    submitted: float | None = None
    finished: float | None = None
    progress: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    code: int | None = None
    replyRef: str | None = None
    priority: int | None = None  # 0 (lowest) .. 9 (highest)
    tenant: str | None = None  # the tenant of the API token that created it


def _name(spec: ProviderSpec, what: str) -> str:
    return f"{spec.title.replace(' ', '')}{what}"


_BUILT: dict[tuple[str, str], type[BaseModel]] = {}


def cache(build: Callable[[ProviderSpec], type[BaseModel]]) -> Callable[[ProviderSpec], type[BaseModel]]:
    """Build each provider's model once (one class per component name in the document)."""
    def built(spec: ProviderSpec) -> type[BaseModel]:
        key = (build.__name__, spec.name)
        if key not in _BUILT:
            _BUILT[key] = build(spec)
        return _BUILT[key]

    built.__doc__ = build.__doc__
    return built


@cache
def account(spec: ProviderSpec) -> type[BaseModel]:
    """One account as `GET {prefix}/accounts/{id}` answers it: secrets masked, times in epoch
    seconds with their `…UTC` ISO twins, `error` while it is out of rotation."""
    fields: dict[str, Any] = {spec.id_field: (str, ...), "maxJobs": (int, ...)}
    for name in spec.credential_fields:
        fields.setdefault(name, (str | None, None))
    fields[spec.session_key] = (dict[str, Any] | None, None)
    for name in ("tokenExpires", "lastRefreshed", "cooldownUntil", "errorUntil"):
        fields[name] = (float | None, None)
        fields[f"{name}UTC"] = (str | None, None)
    fields.update(error=(str | None, None), errorUTC=(str | None, None))
    return create_model(_name(spec, "Account"), __config__=OPEN, **fields)


@cache
def accounts(spec: ProviderSpec) -> type[BaseModel]:
    """Every account of a provider, by id (`GET {prefix}/accounts`)."""
    return create_model(_name(spec, "Accounts"), __base__=RootModel[dict[str, account(spec)]])


@cache
def running(spec: ProviderSpec) -> type[BaseModel]:
    """A running generation, as `GET {prefix}/scheduler` and `…/scheduler/available` list them:
    its public id (under the provider's id key; MiniMax images under `imageId`), the account,
    `started` (ISO 8601) and `elapsed` ("MM:SS")."""
    fields = {spec.shape.id_key: (str | None, None), spec.id_field: (str | None, None),
              "started": (str, ...), "elapsed": (str, Field(pattern=r"^\d{2,}:\d{2}$")),
              "replyUrl": (str | None, None), "replyRef": (str | None, None)}
    return create_model(_name(spec, "Running"), __config__=OPEN, **fields)


@cache
def available(spec: ProviderSpec) -> type[BaseModel]:
    """`GET {prefix}/scheduler/available`: useapi's `executing` and `available` lists, plus every
    account's load (`accounts`) and the waiting lines (`waiting`: the common line, `pinned`: per account)."""
    load = create_model(_name(spec, "Load"), __config__=OPEN, **{
        spec.id_field: (str, ...), "maxJobs": (int, ...), "executing": (int, ...), "available": (int, ...)})
    row = create_model(_name(spec, "AccountLoad"), __base__=load, eligible=(bool, ...))
    return create_model(_name(spec, "Available"), __config__=OPEN, executing=(list[running(spec)], ...),
                        available=(list[load], ...), accounts=(list[row], ...), waiting=(int, ...),
                        pinned=(dict[str, int], ...))

