"""The tenant's webhook: endpoint configuration, delivery log, replays and a test event (tenant admin only)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api.errors import Conflict, ValidationFailed
from chalicelib.api.guards import not_configured, not_found, require_tenant_admin
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.timeutil import isoformat

if TYPE_CHECKING:   # annotations only: the request/response models load on first use (chalicelib.api.routing),
                    # the tables' models with the services that return them (chalicelib.lazy)
    from chalicelib.api.schemas.webhook import DeliveriesQuery, PutWebhook, ReplaySince
    from chalicelib.models.webhook import Webhook, WebhookDelivery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.webhook")
deliveries = lazy_module("chalicelib.notify.deliveries")
webhook_config = lazy_module("chalicelib.notify.webhook_config")
transport = lazy_module("chalicelib.notify.transport")

bp = Blueprint(__name__)
TAGS = ("webhook",)


def webhook_out(webhook: Webhook) -> dict:
    return schemas.WebhookOut(url=webhook.url, event_types=list(webhook.event_types or webhook_config.EVENT_TYPES),
                              secret_created_at=webhook.secret_created_at, created_at=webhook.created_at,
                              updated_at=webhook.updated_at).model_dump()


def delivery_out(d: WebhookDelivery) -> dict:
    next_at = None
    if d.status == "pending" and d.next_attempt_at is not None:
        next_at = isoformat(datetime.fromtimestamp(d.next_attempt_at, tz=timezone.utc))
    return schemas.DeliveryOut(id=d.delivery_id, event_id=d.event_id, event_type=d.event_type, status=d.status,
                               attempts=int(d.attempts or 0), replays=int(d.replays or 0), next_attempt_at=next_at,
                               last_attempt_at=d.last_attempt_at,
                               last_status_code=int(d.last_status_code) if d.last_status_code is not None else None,
                               last_error=d.last_error, created_at=d.created_at, delivered_at=d.delivered_at,
                               dead_lettered_at=d.dead_lettered_at).model_dump()


def _webhook(tenant_id: str) -> Webhook:
    webhook = webhook_config.get_webhook(tenant_id)
    if webhook is None:
        raise not_configured("webhook", "/v1/webhook")
    return webhook


def _delivery(tenant_id: str, delivery_id: str) -> WebhookDelivery:
    delivery = deliveries.get_delivery(tenant_id, delivery_id)
    if delivery is None:
        raise not_found("webhook delivery", delivery_id)
    return delivery


@route(bp, "/v1/webhook", methods=["PUT"], body="chalicelib.api.schemas.webhook:PutWebhook",
       response="chalicelib.api.schemas.webhook:WebhookSaved", errors=(422,),
       summary="Create or replace the tenant's webhook (the signing secret is shown once)", tags=TAGS)
def put_webhook(body: PutWebhook):
    principal = require_tenant_admin()
    try:
        saved = webhook_config.put_webhook(principal.tenant_id, body.url, body.event_types,
                                           rotate_secret=body.rotate_secret)
    except transport.InvalidWebhookUrl as exc:
        raise ValidationFailed(f"url: {exc}", errors=[{"field": "url", "message": str(exc)}]) from None
    return {**webhook_out(saved.webhook), "secret": saved.secret}


@route(bp, "/v1/webhook", methods=["GET"], response="chalicelib.api.schemas.webhook:WebhookOut", errors=(404,),
       summary="The tenant's webhook (without its secret)", tags=TAGS)
def get_webhook():
    return webhook_out(_webhook(require_tenant_admin().tenant_id))


@route(bp, "/v1/webhook", methods=["DELETE"], status=204, errors=(404,),
       summary="Remove the tenant's webhook (pending deliveries end as dead letters)", tags=TAGS)
def delete_webhook():
    principal = require_tenant_admin()
    if not webhook_config.delete_webhook(principal.tenant_id):
        raise not_configured("webhook", "/v1/webhook")
    return None


@route(bp, "/v1/webhook/deliveries", methods=["GET"], query="chalicelib.api.schemas.webhook:DeliveriesQuery",
       response="chalicelib.api.schemas.webhook:DeliveryList",
       summary="The delivery log, newest first (filter by status)", tags=TAGS)
def list_deliveries(query: DeliveriesQuery):
    principal = require_tenant_admin()
    scope = f"webhook-deliveries:{query.status or '*'}"
    items, last = deliveries.list_deliveries(principal.tenant_id, query.status, query.limit,
                                             decode_cursor(query.cursor, principal.tenant_id, scope))
    return {"items": [delivery_out(d) for d in items],
            "next_cursor": encode_cursor(principal.tenant_id, scope, last)}


@route(bp, "/v1/webhook/deliveries/{delivery_id}", methods=["GET"],
       response="chalicelib.api.schemas.webhook:DeliveryOut", errors=(404,), summary="One delivery", tags=TAGS)
def get_delivery(delivery_id: str):
    return delivery_out(_delivery(require_tenant_admin().tenant_id, delivery_id))


@route(bp, "/v1/webhook/deliveries/{delivery_id}/replay", methods=["POST"],
       response="chalicelib.api.schemas.webhook:DeliveryOut", status=202, errors=(404, 409),
       summary="Deliver a delivered or dead-lettered event again (same event id)", tags=TAGS)
def replay_delivery(delivery_id: str):
    principal = require_tenant_admin()
    delivery = _delivery(principal.tenant_id, delivery_id)
    try:
        return delivery_out(deliveries.replay(delivery))
    except deliveries.NotReplayable as exc:
        raise Conflict(str(exc)) from None


@route(bp, "/v1/webhook/deliveries/replay", methods=["POST"], body="chalicelib.api.schemas.webhook:ReplaySince",
       response="chalicelib.api.schemas.webhook:ReplayDone", status=202,
       summary="Replay every delivery dead-lettered since a time", tags=TAGS)
def replay_since(body: ReplaySince):
    principal = require_tenant_admin()
    result = deliveries.replay_dead_letters(principal.tenant_id, isoformat(body.since))
    return {"replayed": result.replayed, "truncated": result.truncated}


@route(bp, "/v1/webhook/test", methods=["POST"], response="chalicelib.api.schemas.webhook:TestDelivery", errors=(404,),
       summary="POST a signed webhook.test event to the webhook once, synchronously", tags=TAGS)
def test_webhook():
    principal = require_tenant_admin()
    _webhook(principal.tenant_id)
    event_id, outcome = deliveries.send_test(principal.tenant_id)
    return {"event_id": event_id, "delivered": outcome.ok, "status_code": outcome.status_code,
            "result": outcome.line}
