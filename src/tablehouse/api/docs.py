"""The interactive docs, /docs (Swagger UI) and /redoc, served with no network at all.

FastAPI's own pages load their JavaScript, CSS and favicon from CDNs, which leaves them
blank in a private network. These serve the same pages from assets shipped in the package
(docs_assets/, refreshed by scripts/fetch_docs_assets.py, which records their versions).
Each page also carries a Content-Security-Policy that lets it load from this server only:
ReDoc's side menu shows a logo from its vendor's CDN, and a description could link an
image; a browser on a closed network would wait on those, and an open one would tell a
third party who reads these docs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, Response

from tablehouse.errors import NotFound

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"
ASSETS_PATH = f"{DOCS_PATH}/assets"
ASSETS = Path(__file__).with_name("docs_assets")
# What the pages load; the licences beside them are shipped, not served.
_SERVED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The URLs carry the asset's package version, so a refreshed asset is a new URL and a day
# of caching never serves a stale one.
_CACHE = {"Cache-Control": "public, max-age=86400"}
# Scripts: the bundles and the pages' own inline scripts, by hash. Styles: both UIs set
# inline styles. Workers: ReDoc's search runs in one it makes from a blob.
_POLICY = (
    "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'; "
    "connect-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
    "script-src 'self' {inline}"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
# No validator badge: its image comes from an online validator, given this document's URL.
_SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


def install_docs(app: FastAPI) -> None:
    """Serve /docs, its OAuth2 redirect page, /redoc and their assets (the app is built with
    ``docs_url=None, redoc_url=None``)."""
    versions = _asset_versions()
    openapi_url = app.openapi_url or "/openapi.json"

    def asset(name: str) -> str:
        return f"{ASSETS_PATH}/{name}?v={versions[name]}"

    router = APIRouter(include_in_schema=False)

    # Built once: the pages depend on nothing but the app's title and the asset versions.
    swagger_ui = _with_policy(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset("swagger-ui-bundle.js"),
            swagger_css_url=asset("swagger-ui.css"),
            swagger_favicon_url=asset("favicon.png"),
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
        )
    )
    oauth2_redirect = _with_policy(get_swagger_ui_oauth2_redirect_html())
    redoc = _with_policy(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset("redoc.standalone.js"),
            redoc_favicon_url=asset("favicon.png"),
            with_google_fonts=False,
        )
    )

    @router.get(DOCS_PATH)
    async def swagger_ui_page() -> Response:
        return swagger_ui.page()

    @router.get(OAUTH2_REDIRECT_PATH)
    async def swagger_ui_oauth2_redirect() -> Response:
        return oauth2_redirect.page()

    @router.get(REDOC_PATH)
    async def redoc_page() -> Response:
        return redoc.page()

    @router.get(f"{ASSETS_PATH}/{{name}}")
    async def docs_asset(name: str) -> FileResponse:
        media_type = _SERVED.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset named {name!r}")
        return FileResponse(ASSETS / name, media_type=media_type, headers=_CACHE)

    app.include_router(router)


class _Page:
    def __init__(self, body: bytes, policy: str) -> None:
        self.body = body
        self.headers = {"Content-Security-Policy": policy}

    def page(self) -> Response:
        return HTMLResponse(self.body, headers=self.headers)


def _with_policy(html: HTMLResponse) -> _Page:
    """``html``'s page, with a policy that allows its inline scripts by their hashes."""
    body = bytes(html.body)
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(body)
    ]
    return _Page(body, _POLICY.format(inline=" ".join(hashes)))


def _asset_versions() -> dict[str, str]:
    """Each served file's package version, from the manifest the fetch script wrote."""
    manifest = json.loads((ASSETS / "manifest.json").read_bytes())
    packages = manifest["packages"]
    return {name: packages[manifest["files"][name]["package"]]["version"] for name in _SERVED}
