"""The OAuth redirect URI (`<public base URL>/v1/oauth/callback`, registered at Google / Microsoft Entra): the
provider sends the browser back here with `code`+`state` or `error`+`state` — as a query (GET) or, with
Microsoft's `response_mode=form_post`, a form (POST). Authenticated by the signed single-use state, not a key."""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from chalice import Blueprint, Response

from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.mailboxes import AdminConsentQuery, CallbackQuery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.mailboxes")
pages = lazy_module("chalicelib.oauthflow.pages")
consent = lazy_module("chalicelib.oauthflow.service")

bp = Blueprint(__name__)
TAGS = ("oauth",)
FORM_LIMIT = 16_384


def _respond(outcome) -> Response:
    status, headers, body = pages.callback_response(outcome)
    return Response(body=body, status_code=status, headers=headers)


def _params(query: CallbackQuery | AdminConsentQuery) -> dict[str, str]:
    return {k: v for k, v in query.model_dump().items() if v is not None}


@route(bp, "/v1/oauth/callback", methods=["GET"], auth="none", query="chalicelib.api.schemas.mailboxes:CallbackQuery",
       status=302, tags=TAGS, content_type="text/html", errors=(400,),
       summary="OAuth consent callback: redirects to the return URL with ?mailbox_id=&outcome= (or a result page)")
def oauth_callback(query: CallbackQuery):
    return _respond(consent.complete_consent(_params(query)))


@route(bp, "/v1/oauth/callback", methods=["POST"], auth="none", status=302, tags=TAGS, content_type="text/html",
       errors=(400,), accepts=("application/x-www-form-urlencoded", "application/json"),
       summary="OAuth consent callback with response_mode=form_post (Microsoft)")
def oauth_callback_form():
    # Microsoft posts a form; any other body reads as an empty form and ends as `invalid_state` (never a 415).
    raw = (bp.current_request.raw_body or b"")[:FORM_LIMIT].decode("utf-8", "replace")
    fields = dict(parse_qsl(raw, keep_blank_values=False))
    try:
        query = schemas.CallbackQuery.model_validate(fields)
    except ValueError:
        query = schemas.CallbackQuery()
    return _respond(consent.complete_consent(_params(query)))


@route(bp, "/v1/oauth/admin-consent", methods=["GET"], auth="none",
       query="chalicelib.api.schemas.mailboxes:AdminConsentQuery", status=302, tags=TAGS, content_type="text/html",
       errors=(400,),
       summary="Microsoft admin-consent redirect: records the approval (the mailbox returns to pending_auth)")
def oauth_admin_consent(query: AdminConsentQuery):
    return _respond(consent.complete_admin_consent(_params(query)))
