"""Guards tenant isolation on every route of the OpenAPI document: another tenant's key — as the tenant itself
and with a user id that exists in the first tenant — given the first tenant's ids answers exactly what an id
that exists nowhere gets (404; a tenant-admin route called with X-User-Id answers 403 whatever the id), its
lists hold none of the first tenant's ids or content, and its writes leave the first tenant's data as it was.
A route added to the API without an entry here fails the sweep.
(Access levels inside one tenant are walked by tests/unit/test_sharing_matrix.py.)"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.api.openapi import build_document
from chalicelib.models.message import Message
from chalicelib.models.event import Event
from chalicelib.notify import deliveries, user_notifications
from chalicelib.threads import derived
from tests.unit.test_sharing_matrix import make_world  # noqa: F401 - the fixture that builds tenant A's world

# Routes that carry no tenant's data or are not called with a tenant key (each verified by its own tests).
PUBLIC = {
    ("get", "/v1/health"), ("get", "/v1/openapi.json"), ("get", "/docs"),
    ("get", "/v1/oauth/callback"), ("post", "/v1/oauth/callback"), ("get", "/v1/oauth/admin-consent"),
    ("post", "/v1/push/gmail"), ("post", "/v1/push/graph"), ("post", "/v1/push/graph/lifecycle"),
    ("get", "/console"), ("get", "/console/{asset}"), ("get", "/docs/{asset}"),   # static files
}
OPERATOR = {("get", "/v1/admin/tenants"), ("post", "/v1/admin/tenants"), ("patch", "/v1/admin/tenants/{tenant_id}")}

# Tenant-level routes (no id of the other tenant in the path) and the body each is called with.
TENANT_LEVEL = {
    ("get", "/v1/audit"): None, ("post", "/v1/directory/batch"): {"records": [
        {"type": "company", "id": "c-1", "name": "Mine", "emails": ["b@other.example"]}]},
    ("get", "/v1/keys"): None, ("post", "/v1/keys"): {"name": "b-key"},
    ("get", "/v1/mail-servers"): None,
    ("post", "/v1/mail-servers"): {"name": "B", "type": "imap", "imap": {"host": "imap.other.example"}},
    ("get", "/v1/mailboxes"): None, ("get", "/v1/notification-relay"): None,
    ("put", "/v1/notification-relay"): None, ("delete", "/v1/notification-relay"): None,
    ("get", "/v1/pairing/settings"): None, ("put", "/v1/pairing/settings"): {"own_domains": ["other.example"]},
    ("get", "/v1/rules"): None,
    ("post", "/v1/rules"): {"name": "B rule", "actions": [{"type": "bind"}]},
    ("get", "/v1/signals"): None, ("get", "/v1/webhook"): None, ("put", "/v1/webhook"): None,
    ("delete", "/v1/webhook"): None, ("get", "/v1/webhook/deliveries"): None,
    ("post", "/v1/webhook/deliveries/replay"): {"since": "2000-01-01T00:00:00Z"},
    ("post", "/v1/webhook/test"): None, ("post", "/v1/mailboxes"): None,
    ("get", "/v1/privacy/lists"): None, ("put", "/v1/privacy/lists"): {"never_import": ["@customer.example"]},
    ("get", "/v1/privacy/settings"): None, ("put", "/v1/privacy/settings"): {"retention_days": 30},
    ("post", "/v1/erasure"): {"email": "info@customer.example"},   # B's erasure must not reach A's mail
    ("get", "/v1/threads"): None, ("get", "/v1/messages/search"): None,
}
# Query strings of tenant-level GET routes, filled with tenant A's ids (a list or a search naming A's things).
QUERIES = {("get", "/v1/threads"): "?mailbox_id={mailbox_id}", ("get", "/v1/messages/search"): "?q=customer"}

# Path parameters filled with tenant A's ids; user ids and directory ids are names a tenant chooses, so the
# other tenant may use the same ones for its own (they must reach only its own data).
BODIES = {
    ("patch", "/v1/keys/{key_id}"): {"name": "stolen"},
    ("patch", "/v1/mail-servers/{server_id}"): {"name": "stolen"},
    ("patch", "/v1/mailboxes/{mailbox_id}"): {"name": "stolen"},
    ("put", "/v1/mailboxes/{mailbox_id}/shares/{user_id}"): {"access": "read_write"},
    ("post", "/v1/mailboxes/{mailbox_id}/authorize"): {},
    ("post", "/v1/messages/{message_id}/create-record"): {"type": "project"},
    ("post", "/v1/messages/{message_id}/links"): {"type": "project", "id": "pr-2"},
    ("patch", "/v1/rules/{rule_id}"): {"name": "stolen"},
    ("put", "/v1/directory/{record_type}/{record_id}"): {"name": "B's own"},
    ("put", "/v1/users/{user_id}/notification-settings"): {"channels": {"new_mail": "off"}},
    ("post", "/v1/mailboxes/{mailbox_id}/send"): {"mode": "new", "to": ["x@other.example"], "text": "hi"},
    ("put", "/v1/threads/{thread_id}/privacy"): {"private": True},
    ("put", "/v1/messages/{message_id}/privacy"): {"private": True},
    ("put", "/v1/users/{user_id}/privacy-lists"): {"never_import": ["@customer.example"]},
}
OWN_NAMESPACE = {"{user_id}", "{record_id}"}   # routes whose only foreign-looking ids are tenant-chosen names


@pytest.fixture
def tenant_a(api, tenant, make_world):  # noqa: F811 - make_world is the imported fixture (it stubs the login check)
    world = make_world("personal")
    key = tenant["key"]
    ids = {"{mailbox_id}": world["mailbox"].mailbox_id, "{message_id}": world["message"].message_id,
           "{signal_id}": world["signal"], "{index}": "0", "{record_type}": "project", "{record_id}": "pr-1",
           "{entity_id}": "pr-1", "{user_id}": "u-owner"}
    server = api("POST", "/v1/mail-servers", key=key,
                 json_body={"name": "A", "type": "imap", "imap": {"host": "imap.acme-crm.example"}})
    ids["{server_id}"] = server.json["id"]
    second_key = api("POST", "/v1/keys", key=key, json_body={"name": "a-second"})
    ids["{key_id}"] = second_key.json["id"]
    rule = api("POST", "/v1/rules", key=key, json_body={"name": "A rule", "actions": [{"type": "bind"}]})
    ids["{rule_id}"] = rule.json["id"]
    unpaired = api("DELETE", f"/v1/messages/{ids['{message_id}']}/links/project/pr-1", key=key)
    assert unpaired.status == 204, unpaired
    ids["{audit_id}"] = api("GET", "/v1/audit", key=key).json["items"][0]["id"]
    assert api("PUT", "/v1/webhook", key=key, json_body={"url": "http://127.0.0.1:9/hook"}).status == 200
    send_at = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = api("POST", f"/v1/mailboxes/{ids['{mailbox_id}']}/send", key=key, json_body={
        "mode": "new", "to": ["jan@customer.example"], "subject": "A's plan", "text": "secret plan",
        "send_at": send_at})
    assert scheduled.status == 202, scheduled
    ids["{outbox_id}"] = scheduled.json["id"]
    for event in Event.query(tenant["id"]):
        user_notifications.on_event(event)
        deliveries.create_for_event(event)
    ids["{delivery_id}"] = api("GET", "/v1/webhook/deliveries", key=key).json["items"][0]["id"]
    erasure = api("POST", "/v1/erasure", key=key, json_body={"email": "nobody@nowhere.example"})
    assert erasure.status == 202, erasure
    ids["{job_id}"] = erasure.json["id"]
    feed = api("GET", "/v1/users/u-owner/notifications", key=key)
    ids["{notification_id}"] = feed.json["items"][0]["id"]
    derived.remember(tenant["id"], [ids["{message_id}"]])      # in its conversation and the search index
    ids["{thread_id}"] = Message.get(ids["{message_id}"]).conversation_id
    return {"key": key, "ids": ids, "world": world}


def a_view(api, a) -> str:
    """Everything tenant A sees through its own key (compared before and after the sweep)."""
    key, ids = a["key"], a["ids"]
    paths = ["/v1/mailboxes", f"/v1/mailboxes/{ids['{mailbox_id}']}", f"/v1/messages/{ids['{message_id}']}",
             f"/v1/mailboxes/{ids['{mailbox_id}']}/shares", "/v1/keys", "/v1/mail-servers", "/v1/rules",
             "/v1/signals", "/v1/webhook", "/v1/pairing/settings", "/v1/directory/project/pr-1",
             "/v1/directory/company/c-1", "/v1/users/u-owner/notification-settings",
             "/v1/users/u-owner/notifications", f"/v1/webhook/deliveries/{ids['{delivery_id}']}",
             f"/v1/outbox/{ids['{outbox_id}']}", f"/v1/threads/{ids['{thread_id}']}",
             f"/v1/threads?mailbox_id={ids['{mailbox_id}']}", "/v1/messages/search?q=customer"]
    answers = {path: api("GET", path, key=key) for path in paths}
    assert {path: answer.status for path, answer in answers.items()} == dict.fromkeys(paths, 200)
    return json.dumps({path: answer.json for path, answer in answers.items()}, sort_keys=True)


def secret_markers(a) -> list[str]:
    ids = a["ids"]
    return [ids[name] for name in ("{mailbox_id}", "{message_id}", "{signal_id}", "{server_id}", "{key_id}",
                                   "{rule_id}", "{audit_id}", "{delivery_id}", "{notification_id}",
                                   "{outbox_id}", "{job_id}", "{thread_id}")] + [
        "info@customer.example", "owner@acme-crm.example", "imap.acme-crm.example", "A rule", "secret plan"]


@pytest.mark.parametrize("as_user", [None, "u-owner"], ids=["as-tenant", "as-same-user-id"])
def test_another_tenants_key_reaches_nothing_of_the_first_tenant(api, tenant_a, other_tenant, as_user):
    document = build_document()
    before = a_view(api, tenant_a)
    markers = secret_markers(tenant_a)
    unlisted, leaks = [], []
    for path, operations in document["paths"].items():
        for method in operations:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            route = (method, path)
            if route in PUBLIC:
                continue
            if route in OPERATOR:
                result = api(method.upper(), path.replace("{tenant_id}", "x"), key=other_tenant["key"],
                             user=as_user, json_body={} if method != "get" else None)
                if result.status not in (401, 403):
                    leaks.append((route, "operator route with a tenant key", result.status))
                continue
            placeholders = {part for part in path.split("/") if part.startswith("{")}
            if not placeholders:
                if route not in TENANT_LEVEL:
                    unlisted.append(route)
                    continue
                body = TENANT_LEVEL[route]
                filled = path + QUERIES.get(route, "").format_map({k.strip("{}"): v for k, v in
                                                                    tenant_a["ids"].items()})
                result = api(method.upper(), filled, key=other_tenant["key"], user=as_user,
                             json_body=body if body is not None or method == "get" else {})
            else:
                if not placeholders <= set(tenant_a["ids"]):
                    unlisted.append(route)
                    continue
                filled = path
                for name in placeholders:
                    filled = filled.replace(name, tenant_a["ids"][name])
                body = BODIES.get(route, {} if method in ("post", "put", "patch") else None)
                result = api(method.upper(), filled, key=other_tenant["key"], user=as_user, json_body=body)
                own_namespace = placeholders <= OWN_NAMESPACE | {"{record_type}"}
                if not own_namespace:
                    # the answer must be what an id that exists nowhere gets: 404, or a 403 that does not
                    # look at the id (a tenant-admin route called with X-User-Id)
                    nowhere = filled
                    for name in placeholders - {"{record_type}", "{index}"}:
                        nowhere = nowhere.replace(tenant_a["ids"][name], "zz-exists-nowhere")
                    control = api(method.upper(), nowhere, key=other_tenant["key"], user=as_user, json_body=body)
                    if result.status not in (403, 404) or (result.status, result.json.get("type")) != (
                            control.status, control.json.get("type")):
                        leaks.append((route, "answer differs from a nonexistent id's", result.status,
                                      control.status, result.body[:160]))
            # a 404 may repeat the id the caller sent; anything else of tenant A's is a leak
            found = [marker for marker in markers if marker in result.body and marker not in filled]
            if found:
                leaks.append((route, "response names tenant A's data", found))
    assert unlisted == [], f"routes without a sweep entry (add them to this test): {unlisted}"
    assert leaks == []
    assert a_view(api, tenant_a) == before, "a call with the other tenant's key changed tenant A's data"
