"""Interactive API documentation that works without internet: Swagger UI at `/docs`, its files
served from the installed `swagger-ui-bundle-v2` package instead of a CDN.

The dispatcher is self-hosted, often behind a firewall: FastAPI's default page loads Swagger UI
from a CDN and stays blank there. (`swagger-ui-bundle` 1.x ships Swagger UI 4, which cannot read
the OpenAPI 3.1 document FastAPI writes; its `-v2` fork ships Swagger UI 5.) The page's files are
served by `/docs` itself (`/docs?asset=swagger-ui-bundle.js`), so the documentation stays the
three open paths `/docs`, `/docs/oauth2-redirect` and `/openapi.json`. ReDoc is not served: no
package ships it, and a page that needs the internet is what this module removes.
"""

from __future__ import annotations

from functools import cache

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import Response

from ..errors import DispatcherError, NotFound

ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "favicon-32x32.png": "image/png"}


class DocsUnavailable(DispatcherError):
    status = 503


@cache
def asset(name: str) -> bytes:
    """One of Swagger UI's files, read once from the installed package."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        raise DocsUnavailable("Swagger UI is not installed: pip install swagger-ui-bundle-v2") from None
    return (swagger_ui_path / name).read_bytes()


def install(app: FastAPI) -> None:
    """Serve `/docs` (the page and its files) and `/docs/oauth2-redirect` from the package."""

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        name = request.query_params.get("asset")
        if name is None:
            return get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} — API",
                swagger_js_url=f"{root}/docs?asset=swagger-ui-bundle.js",
                swagger_css_url=f"{root}/docs?asset=swagger-ui.css",
                swagger_favicon_url=f"{root}/docs?asset=favicon-32x32.png",
                oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
                swagger_ui_parameters={"persistAuthorization": True})
        if name not in ASSETS:
            raise NotFound(f"No documentation file {name[:80]!r}")
        return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect():
        return get_swagger_ui_oauth2_redirect_html()
