"""Microsoft Graph webhooks: change notifications and lifecycle notifications (no API key: Graph calls them;
each notification is authenticated by its clientState, see `chalicelib.push.graph`).

Validation handshake (learn.microsoft.com "Receive change notifications through webhooks"): Graph POSTs
`?validationToken=<token>`; the endpoint answers 200 `text/plain` with the DECODED token and nothing else,
within 10 s. The token is echoed verbatim as text/plain with `nosniff` — never as HTML, never with anything
else reflected.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.api.errors import BadRequest, PayloadTooLarge
from chalicelib.api.routing import Answer, route
from chalicelib.config import get_settings
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.push import GraphPushQuery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
graph = lazy_module("chalicelib.push.graph")

bp = Blueprint(__name__)
TAGS = ("push",)
QUERY = "chalicelib.api.schemas.push:GraphPushQuery"
ACCEPTS = ("application/json", "text/plain")     # Graph POSTs the handshake as text/plain
HANDSHAKE = {200: Answer("Validation handshake: the decoded validationToken, verbatim", content_type="text/plain")}
TEXT_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store"}


def _payload() -> dict:
    raw = bp.current_request.raw_body or b""
    if len(raw) > get_settings().max_body_bytes:
        raise PayloadTooLarge(f"Request body exceeds {get_settings().max_body_bytes} bytes.")
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("Notification body is not valid JSON.") from None
    return data if isinstance(data, dict) else {}


def _answer(query: GraphPushQuery, handle) -> Response:
    if query.validationToken is not None:
        return Response(body=query.validationToken, status_code=200, headers=TEXT_HEADERS)
    handle(_payload())
    return Response(body="", status_code=202, headers={"Cache-Control": "no-store"})


@route(bp, "/v1/push/graph", methods=["POST"], auth="none", query=QUERY, status=202, tags=TAGS,
       content_type="text/plain", errors=(400, 413), accepts=ACCEPTS, also=HANDSHAKE,
       summary="Microsoft Graph change notifications (validation handshake: the token echoed as text/plain)")
def graph_notifications(query: GraphPushQuery):
    return _answer(query, graph.handle_notifications)


@route(bp, "/v1/push/graph/lifecycle", methods=["POST"], auth="none", query=QUERY, status=202,
       tags=TAGS, content_type="text/plain", errors=(400, 413), accepts=ACCEPTS, also=HANDSHAKE,
       summary="Microsoft Graph lifecycle notifications (reauthorizationRequired, subscriptionRemoved, missed)")
def graph_lifecycle(query: GraphPushQuery):
    return _answer(query, graph.handle_lifecycle)
