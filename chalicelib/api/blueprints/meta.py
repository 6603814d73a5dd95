"""Unauthenticated service routes: health, OpenAPI document, rendered docs."""
from __future__ import annotations

from functools import lru_cache

from chalice import Blueprint, Response

from chalicelib.api.routing import Answer, route
from chalicelib.config import get_settings
from chalicelib.console import assets
from chalicelib.lazy import lazy_module

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
reference_page = lazy_module("chalicelib.api.docs_page")
openapi = lazy_module("chalicelib.api.openapi")

bp = Blueprint(__name__)


@route(bp, "/v1/health", methods=["GET"], auth="none", response="chalicelib.api.schemas.common:Health",
       summary="Liveness", tags=("meta",))
def health():
    return {"status": "ok", "stage": get_settings().stage}


@route(bp, "/v1/openapi.json", methods=["GET"], auth="none", summary="OpenAPI 3.1 document", tags=("meta",))
def openapi_document():
    return openapi.build_document(get_settings().public_base_url)


@lru_cache(maxsize=2)
def _docs_html(base_url: str) -> str:
    """The rendered reference; the routes (and so the document) are fixed once the app is imported, the base URL
    (its examples' `$B`) once the settings are read."""
    return reference_page.render_docs(openapi.build_document(base_url))


@route(bp, "/docs", methods=["GET"], auth="none", tags=("meta",), content_type="text/html",
       summary="The API reference (HTML): every operation with its schemas and examples",
       also={308: Answer("`/docs/` → `../docs` (the page's relative links are written for `/docs`)",
                         content_type="text/plain")})
def docs_page():
    moved = assets.slash_redirect((bp.current_request.context or {}).get("path"), "docs")
    return moved or Response(body=_docs_html(get_settings().public_base_url), status_code=200,
                             headers=assets.headers("text/html; charset=utf-8", reference_page.DOCS_CSP))

