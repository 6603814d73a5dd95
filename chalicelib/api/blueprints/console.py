"""The console (`/console`, static HTML/JS/CSS calling the public API from the browser) and the reference's
assets (`/docs/<file>`). No server-side sessions: the browser keeps the key in sessionStorage."""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.errors import NotFound
from chalicelib.api.routing import Answer, route
from chalicelib.console import assets
from chalicelib.lazy import lazy_module

# Imported when a route first uses it (chalicelib.lazy: the API's cold start): the reference's CSP.
reference_page = lazy_module("chalicelib.api.docs_page")

bp = Blueprint(__name__)
DOCS_ASSETS = frozenset({"docs.css", "docs.js"})
SLASH_REDIRECT = {308: Answer("`/console/` → `../console` (the page's relative links are written for `/console`)",
                              content_type="text/plain")}


def _static(name: str, csp: str = assets.CONSOLE_CSP) -> Response:
    found = assets.load(name)
    if found is None:
        raise NotFound("No such file.")
    text, content_type = found
    return Response(body=text, status_code=200, headers=assets.headers(content_type, csp))


@route(bp, "/console", methods=["GET"], auth="none", summary="The web console (sign in with an API key)",
       tags=("meta",), content_type="text/html", also=SLASH_REDIRECT)
def console_index():
    return assets.slash_redirect((bp.current_request.context or {}).get("path"), "console") or _static("index.html")


@route(bp, "/console/{asset}", methods=["GET"], auth="none", errors=(404,), tags=("meta",),
       summary="A static file of the console (script, stylesheet)", content_type="text/javascript")
def console_asset(asset: str):
    if asset == "index.html" or asset in DOCS_ASSETS:
        raise NotFound("No such file.")
    return _static(asset)


@route(bp, "/docs/{asset}", methods=["GET"], auth="none", errors=(404,), tags=("meta",),
       summary="A static file of the API reference (docs.css, docs.js)", content_type="text/css")
def docs_asset(asset: str):
    if asset not in DOCS_ASSETS:
        raise NotFound("No such file.")
    return _static(asset, reference_page.DOCS_CSP)
