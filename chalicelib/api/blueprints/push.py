"""Provider push endpoints: authenticated by the provider's own token (not an API key), answered fast, and
never calling the provider — they only request a coalesced sync."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api.errors import BadRequest, Forbidden, Unauthorized
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.push import PubSubPush

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
gmail = lazy_module("chalicelib.push.gmail")

bp = Blueprint(__name__)
TAGS = ("push",)


@route(bp, "/v1/push/gmail", methods=["POST"], auth="none", body="chalicelib.api.schemas.push:PubSubPush", status=204,
       tags=TAGS, errors=(400, 401, 403),
       summary="Gmail Pub/Sub push (OIDC bearer token of the subscription's service account)")
def gmail_push(body: PubSubPush):
    try:
        gmail.handle_push(bp.current_request.headers.get("authorization"), body.message.data)
    except gmail.BadNotification as exc:
        raise BadRequest(str(exc)) from None
    except gmail.PushRejected as exc:
        if exc.status == 401:
            raise Unauthorized(exc.detail) from None
        raise Forbidden(exc.detail) from None
    return None
