"""Mailboxes: create (verified live before stored), list, read, update, delete, connection test, shares.

Access (docs/api.md, access levels): reading needs read access, changing/sharing/testing needs owner access
(the personal
mailbox's owner or the tenant admin); what the caller cannot see answers 404. Connecting, changing the
connection, testing and sharing need the plan feature `mailbox_connection` (403 `feature-not-in-plan`);
listing, reading and deleting stay possible after a downgrade.
"""
from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Iterator

from chalice import Blueprint, Response

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import (ApiError, Conflict, Forbidden, NotFound, PlanLimitReached, UpstreamFailed,
                                   ValidationFailed, field_error)
from chalicelib.api.guards import require_feature
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import Answer, route
from chalicelib.lazy import lazy_module
from chalicelib.mailboxes.errors import (Contended, InvalidField, LimitReached, Missing, NotPermitted,
                                        VerificationFailed)
from chalicelib.tenancy.plans import MAILBOX_CONNECTION

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.common import ListQuery
    from chalicelib.api.schemas.mailboxes import AuthorizeIn, CreateMailbox, MailboxListQuery, ShareIn, UpdateMailbox
    from chalicelib.api.schemas.privacy import DeleteMailboxQuery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.mailboxes")
privacy_schemas = lazy_module("chalicelib.api.schemas.privacy")
purge = lazy_module("chalicelib.erasure.purge")
listing = lazy_module("chalicelib.mailboxes.listing")
service = lazy_module("chalicelib.mailboxes.service")
serialize = lazy_module("chalicelib.mailboxes.serialize")
consent = lazy_module("chalicelib.oauthflow.service")
flows = lazy_module("chalicelib.oauthflow.flows")
oauth_state = lazy_module("chalicelib.oauthflow.state")
kinds = lazy_module("chalicelib.providers.kinds")

bp = Blueprint(__name__)
TAGS = ("mailboxes",)


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Maps the mailbox service's outcomes to problem+json (422 per field, 403, 404, 409)."""
    try:
        yield
    except InvalidField as exc:
        raise field_error(exc.field, exc.message) from None
    except VerificationFailed as exc:
        outcome = exc.outcome
        message = service.verify.AUTH_MESSAGE if outcome.kind == "auth" else outcome.detail
        raise ValidationFailed(outcome.detail, errors=[{"field": outcome.field or "imap", "message": message}],
                               extra={"verification": outcome.kind}) from None
    except NotPermitted as exc:
        raise Forbidden(str(exc)) from None
    except LimitReached as exc:
        raise PlanLimitReached(str(exc)) from None
    except Contended as exc:
        raise Conflict(str(exc)) from None
    except Missing as exc:
        raise NotFound(str(exc)) from None


def _out(mailbox) -> dict:
    return serialize.mailbox_out(mailbox, access.mailbox_access(mailbox, current_principal()) or "read")


def _share_user(user_id: str) -> str:
    try:
        return schemas.check_user_id(user_id)
    except ValueError as exc:
        raise field_error("user_id", str(exc)) from None


def _authorize_url(mailbox, return_url: str | None) -> str:
    try:
        return consent.begin_consent(mailbox, return_url=return_url)
    except consent.ConsentUnavailable as exc:
        raise field_error("mail_server_id", str(exc)) from None
    except flows.BeginFailed as exc:      # the provider could not be asked (502) or refused the app's settings (422)
        raise (UpstreamFailed(exc.detail) if exc.temporary else field_error("mail_server_id", exc.detail)) from None


@route(bp, "/v1/mailboxes", methods=["POST"], body="chalicelib.api.schemas.mailboxes:CreateMailbox",
       response="chalicelib.api.schemas.mailboxes:MailboxOut", status=201, location="/v1/mailboxes/{id}",
       summary="Connect a mailbox (IMAP: the login is verified before it is saved; gmail/outlook: pending_auth "
               "with an authorize_url for the owner's consent)", tags=TAGS, errors=(403, 409, 502))
def create_mailbox(body: CreateMailbox):
    tenant = require_feature(MAILBOX_CONNECTION)
    with domain_errors():
        mailbox = service.create_mailbox(tenant, current_principal(), body.model_dump(exclude={"return_url"}))
    out = _out(mailbox)
    if mailbox.status == "pending_auth":
        try:
            out["authorize_url"] = _authorize_url(mailbox, body.return_url)
        except ApiError:
            consent.discard_unconnected(mailbox)        # a refused create leaves no mailbox behind
            raise
    return out


@route(bp, "/v1/mailboxes/{mailbox_id}/authorize", methods=["POST"],
       body="chalicelib.api.schemas.mailboxes:AuthorizeIn", response="chalicelib.api.schemas.mailboxes:AuthorizeOut",
       summary="A new OAuth consent link for a gmail/outlook mailbox (first connection or re-consent)", tags=TAGS,
       errors=(403, 502))
def authorize_mailbox(mailbox_id: str, body: AuthorizeIn):
    require_feature(MAILBOX_CONNECTION)
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    if not kinds.get_kind(mailbox.type).oauth:
        raise field_error("type", f"a {mailbox.type} mailbox does not connect through OAuth consent")
    out = {"authorize_url": _authorize_url(mailbox, body.return_url), "expires_in": oauth_state.STATE_TTL_SECONDS}
    if mailbox.status == "needs_admin_consent":
        try:
            out["admin_consent_url"] = consent.begin_admin_consent(mailbox, return_url=body.return_url)
        except consent.ConsentUnavailable as exc:
            raise field_error("mail_server_id", str(exc)) from None
    return out


@route(bp, "/v1/mailboxes", methods=["GET"], query="chalicelib.api.schemas.mailboxes:MailboxListQuery",
       response="chalicelib.api.schemas.mailboxes:MailboxList",
       summary="Mailboxes the caller can see (tenant: all; user: own and shared with them)", tags=TAGS)
def list_mailboxes(query: MailboxListQuery):
    principal = current_principal()
    scope = f"mailboxes:{principal.user_id or ''}"
    items, state = listing.list_visible(principal, query.limit,
                                        decode_cursor(query.cursor, principal.tenant_id, scope))
    return {"items": [serialize.mailbox_out(m, level) for m, level in items],
            "next_cursor": encode_cursor(principal.tenant_id, scope, state)}


@route(bp, "/v1/mailboxes/{mailbox_id}", methods=["GET"], response="chalicelib.api.schemas.mailboxes:MailboxOut",
       summary="A mailbox", tags=TAGS)
def get_mailbox(mailbox_id: str):
    return _out(access.get_mailbox(mailbox_id, need="read"))


@route(bp, "/v1/mailboxes/{mailbox_id}", methods=["PATCH"], body="chalicelib.api.schemas.mailboxes:UpdateMailbox",
       response="chalicelib.api.schemas.mailboxes:MailboxOut",
       summary="Change a mailbox (connection changes are verified live first)", tags=TAGS)
def update_mailbox(mailbox_id: str, body: UpdateMailbox):
    tenant = require_feature(MAILBOX_CONNECTION)
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    with domain_errors():
        mailbox = service.update_mailbox(tenant, mailbox, body.model_dump(exclude_unset=True))
    return _out(mailbox)


@route(bp, "/v1/mailboxes/{mailbox_id}", methods=["DELETE"], status=204,
       query="chalicelib.api.schemas.privacy:DeleteMailboxQuery",
       also={200: Answer("Purged: what was deleted, counted, and the provider push subscriptions stopped",
                         "chalicelib.api.schemas.privacy:PurgeOut"),
             202: Answer("Purging continues in the background (`status: purging`)",
                         "chalicelib.api.schemas.privacy:PurgeOut")},
       summary="Disconnect a mailbox (its stored credentials and shares are deleted); with purge=true also "
               "everything stored for it: 200 {status: purged, counts, push_stop}, or 202 {status: purging} "
               "when it continues in the background", tags=TAGS)
def delete_mailbox(mailbox_id: str, query: DeleteMailboxQuery):
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    if not query.purge:
        service.delete_mailbox(mailbox)
        return None
    report = privacy_schemas.PurgeOut.model_validate(purge.purge_now(mailbox)).model_dump(mode="json")
    return Response(body=json.dumps(report), status_code=200 if report["status"] == "purged" else 202,
                    headers={"Content-Type": "application/json"})


@route(bp, "/v1/mailboxes/{mailbox_id}/test", methods=["POST"],
       response="chalicelib.api.schemas.mailboxes:ConnectionTest",
       summary="Run a live connection test: {ok, detail}; flips status auth_error <-> active", tags=TAGS)
def test_mailbox(mailbox_id: str):
    require_feature(MAILBOX_CONNECTION)
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    outcome = service.test_mailbox(mailbox)
    return {"ok": outcome.ok, "detail": outcome.detail, "status": mailbox.status}


@route(bp, "/v1/mailboxes/{mailbox_id}/shares", methods=["GET"], query="chalicelib.api.schemas.common:ListQuery",
       response="chalicelib.api.schemas.mailboxes:ShareList", summary="Users the mailbox is shared with", tags=TAGS)
def list_shares(mailbox_id: str, query: ListQuery):
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    principal, scope = current_principal(), f"shares:{mailbox.mailbox_id}"
    shares, last = service.list_shares(mailbox, query.limit, decode_cursor(query.cursor, principal.tenant_id, scope))
    return {"items": [serialize.share_out(s) for s in shares],
            "next_cursor": encode_cursor(principal.tenant_id, scope, last)}


@route(bp, "/v1/mailboxes/{mailbox_id}/shares/{user_id}", methods=["PUT"],
       body="chalicelib.api.schemas.mailboxes:ShareIn", response="chalicelib.api.schemas.mailboxes:ShareOut",
       summary="Share the mailbox with a user at read or read_write access", tags=TAGS)
def put_share(mailbox_id: str, user_id: str, body: ShareIn):
    require_feature(MAILBOX_CONNECTION)
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    with domain_errors():
        return serialize.share_out(service.put_share(mailbox, _share_user(user_id), body.access))


@route(bp, "/v1/mailboxes/{mailbox_id}/shares/{user_id}", methods=["DELETE"], status=204,
       summary="Stop sharing the mailbox with a user", tags=TAGS)
def delete_share(mailbox_id: str, user_id: str):
    mailbox = access.get_mailbox(mailbox_id, need="owner")
    with domain_errors():
        service.delete_share(mailbox, user_id)
    return None
