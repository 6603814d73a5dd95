"""Unauthenticated service routes: health, OpenAPI document, rendered docs."""
from __future__ import annotations

import html

from chalice import Blueprint, Response

from chalicelib.api.openapi import build_document
from chalicelib.api.routing import route
from chalicelib.api.schemas.common import Health
from chalicelib.config import get_settings

bp = Blueprint(__name__)

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mailbridge API</title>
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2em}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.op{margin:.6rem 0}.m{display:inline-block;width:4.5rem;font-weight:700}</style></head>
<body><h1>mailbridge API</h1><p>OpenAPI 3.1 document: <a href="/v1/openapi.json">/v1/openapi.json</a>.
Authenticate with <code>Authorization: Bearer &lt;api key&gt;</code>; errors are RFC 9457 problem+json.</p>
<div id="ops">%s</div></body></html>"""


def _render_docs(document: dict) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            line = (f'<div class="op"><span class="m">{method.upper()}</span><code>{html.escape(path)}</code> — '
                    f'{html.escape(op["summary"])}</div>')
            by_tag.setdefault(op["tags"][0], []).append(line)
    return "".join(f"<h2>{html.escape(tag)}</h2>{''.join(lines)}" for tag, lines in sorted(by_tag.items()))


@route(bp, "/v1/health", methods=["GET"], auth="none", response=Health, summary="Liveness", tags=("meta",))
def health():
    return {"status": "ok", "stage": get_settings().stage}


@route(bp, "/v1/openapi.json", methods=["GET"], auth="none", summary="OpenAPI 3.1 document", tags=("meta",))
def openapi_document():
    return build_document(get_settings().public_base_url)


@route(bp, "/docs", methods=["GET"], auth="none", summary="Rendered API documentation", tags=("meta",),
       content_type="text/html")
def docs_page():
    page = _DOCS_PAGE % _render_docs(build_document())
    return Response(body=page, status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})

