"""Manual refresh and sync status of a mailbox."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.errors import Conflict, TooManyRequests
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
status = lazy_module("chalicelib.sync.status")

bp = Blueprint(__name__)
TAGS = ("sync",)


@route(bp, "/v1/mailboxes/{mailbox_id}/refresh", methods=["POST"], response="chalicelib.api.schemas.sync:RefreshQueued",
       status=202, summary="Sync the mailbox now (once per 5 minutes; 429 with Retry-After otherwise)", tags=TAGS,
       errors=(404, 409, 429))
def refresh_mailbox(mailbox_id: str):
    mailbox = access.get_mailbox(mailbox_id, need="read_write")
    try:
        outcome = status.request_refresh(mailbox)
    except status.MailboxNotSyncable as exc:
        raise Conflict(f"The mailbox is {exc.status}; it syncs again once it is active.") from None
    if not outcome.queued:
        raise TooManyRequests(f"This mailbox was refreshed recently; try again in {outcome.retry_after} s.",
                              retry_after=outcome.retry_after)
    return {"queued": True, "coalesced": outcome.how == "coalesced"}


@route(bp, "/v1/mailboxes/{mailbox_id}/sync", methods=["GET"], response="chalicelib.api.schemas.sync:SyncStatus",
       summary="Sync status: stage, last success and error, counts, cursor age, push expiry", tags=TAGS,
       errors=(404,))
def mailbox_sync_status(mailbox_id: str):
    return status.sync_status(access.get_mailbox(mailbox_id, need="read"))
