"""useapi.net uploads, kept in the sandbox's upload store and served under `/_sandbox/media/`:
Runway `POST /assets/?email=&name=`, MiniMax `POST /files/?account=`, PixVerse
`POST /files/?email=` (raw bytes in the body, the type in `Content-Type`)."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common import media_url
from ..model import BadRequest
from ..state import Reject
from .http import endpoint
from .specs import SPECS, USER_NUMBER, Spec
from .state import Account, UseapiState

EXTENSIONS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "gif": "gif", "webp": "webp", "mp4": "mp4",
              "mpeg": "mp3", "wav": "wav"}


def _account(ustate: UseapiState, spec: Spec, request: Request) -> Account:
    """The account named in the query, or the only one configured."""
    table = ustate.accounts[spec.provider]
    ident = request.query_params.get(spec.id_field)
    if ident:
        if ident not in table:
            raise Reject(404, spec.not_configured(ident))
        return table[ident]
    if len(table) == 1:
        return next(iter(table.values()))
    if not table:
        raise Reject(404, spec.not_configured())
    raise BadRequest(f"Parameter {spec.id_field} is required when more than one account is configured")


async def _store(ustate: UseapiState, request: Request) -> tuple[str, str]:
    """(media name, upload id) of the request body kept in the sandbox's upload store."""
    data = await request.body()
    if not data:
        raise BadRequest("Request body is empty, send the file's bytes")
    content_type = request.headers.get("content-type") or "application/octet-stream"
    name = request.query_params.get("name") or ""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else content_type.split("/")[-1].split(";")[0]
    stored = ustate.sb.store_upload(data, content_type, EXTENSIONS.get(ext.strip(), "bin"))
    return stored, stored.rsplit(".", 1)[0]


def routes(ustate: UseapiState) -> list[Route]:
    runway, minimax, pixverse = SPECS["runwayml"], SPECS["minimax"], SPECS["pixverse"]

    async def runway_asset(request: Request) -> Response:
        account = _account(ustate, runway, request)
        _, upload = await _store(ustate, request)
        name = request.query_params.get("name") or f"asset-{uuid.uuid4().hex[:8]}"
        asset = f"user:{USER_NUMBER}-runwayml:{account.id}-asset:{upload}"
        return JSONResponse({"assetId": asset, "email": account.id, "name": name})

    async def minimax_file(request: Request) -> Response:
        account = _account(ustate, minimax, request)
        _, upload = await _store(ustate, request)
        return JSONResponse({"fileID": f"user:{USER_NUMBER}-minimax:{account.id}-file:{upload}",
                             "account": account.id})

    async def pixverse_file(request: Request) -> Response:
        _account(ustate, pixverse, request)
        stored, _ = await _store(ustate, request)
        return JSONResponse({"result": [{"path": f"upload/{stored}", "url": media_url(request, stored)}]})

    out = []
    for path, fn in ((f"{runway.base}/assets", runway_asset), (f"{minimax.base}/files", minimax_file),
                     (f"{pixverse.base}/files", pixverse_file)):
        out += [Route(path, endpoint(fn), methods=["POST"]), Route(f"{path}/", endpoint(fn), methods=["POST"])]
    return out
