"""Guards what the authentication/authorization audit of 2026-12-02 found (docs/reliability.md): user ids and hosts
with a line break (`$` matches before a final "\n"), ambiguous credentials (a header sent twice), the plan's
mailbox limit under concurrent creates, a suspended tenant's mail; and what held: malformed Authorization
headers, operator and tenant keys kept apart on every route, a vanished tenant's keys."""
from __future__ import annotations

import re

import pytest

from chalicelib.api import auth_cache
from chalicelib.api.routing import OPERATIONS
from chalicelib.mailboxes import service as mailbox_service, verify
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.tenant import Tenant
from chalicelib.outbox import delivery
from chalicelib.providers.base import SendResult
from chalicelib.tenancy import plans
from tests.conftest import Result
from tests.unit.test_sharing_matrix import make_world  # noqa: F401 - a fixture: a mailbox with a queued send


def call_with_headers(api, path: str, headers: dict[str, list[str]], method: str = "GET"):
    """A call as API Gateway passes repeated header lines: the last value in `headers`, all of them in
    `multiValueHeaders`."""
    event = api.gateway.event_converter.create_lambda_event(
        method, path, {"content-type": "application/json", **{k: v[-1] for k, v in headers.items()}}, None)
    event["multiValueHeaders"] = {"content-type": ["application/json"], **headers}
    event["requestContext"]["identity"]["sourceIp"] = "203.0.113.10"
    event["requestContext"]["requestId"] = "test-request"
    return Result(api.app(event, None))


# ---- user ids ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user_id", ["u-1%0A", "u-1%0D%0A", "u-1%00"])
def test_a_user_id_with_a_trailing_line_break_names_no_user(api, tenant, make_world, user_id):  # noqa: F811
    """`$` in Python's `re` also matches before a final "\\n": "u-1\\n" passed as a user id, so a share or a
    user's settings could be stored for a user no `X-User-Id` can ever name."""
    key = tenant["key"]
    world = make_world("shared")
    shares_before = sorted(s.user_id for s in MailboxShare.query(world["mailbox"].mailbox_id))
    settings = api("PUT", f"/v1/users/{user_id}/notification-settings", key=key,
                   json_body={"channels": {"new_mail": "off"}})
    assert settings.status == 404, settings
    lists = api("PUT", f"/v1/users/{user_id}/privacy-lists", key=key, json_body={"never_import": ["@x.example"]})
    assert lists.status == 404, lists
    share = api("PUT", f"/v1/mailboxes/{world['mailbox'].mailbox_id}/shares/{user_id}", key=key,
                json_body={"access": "read"})
    assert share.status == 422 and share.json["errors"][0]["field"] == "user_id", share
    assert sorted(s.user_id for s in MailboxShare.query(world["mailbox"].mailbox_id)) == shares_before


def test_x_user_id_is_checked_whole(api, tenant):
    for value in ("", " ", "u\x00", "é", "a" * 129, "u 1", "u,v"):
        result = api("GET", "/v1/mailboxes", key=tenant["key"], headers={"x-user-id": value})
        assert result.status == 400, (value, result)
        assert result.json["errors"][0]["field"] == "X-User-Id"
    assert api("GET", "/v1/mailboxes", key=tenant["key"], headers={"x-user-id": "a" * 128}).status == 200


# ---- credentials sent twice ----------------------------------------------------------------------------------

def test_two_authorization_headers_are_refused(api, tenant, other_tenant):
    """RFC 9110 §5.3: Authorization is not a list field, so two lines of it are malformed; API Gateway would pass
    only the last one on, and which tenant a call acts for must not depend on the order of header lines."""
    both = call_with_headers(api, "/v1/keys", {"authorization": [f"Bearer {tenant['key']}",
                                                                 f"Bearer {other_tenant['key']}"]})
    assert both.status == 401 and both.json["type"].endswith("/unauthorized"), both
    same = call_with_headers(api, "/v1/keys", {"authorization": [f"Bearer {tenant['key']}"] * 2})
    assert same.status == 401
    one = call_with_headers(api, "/v1/keys", {"authorization": [f"Bearer {tenant['key']}"]})
    assert one.status == 200, one


def test_two_user_ids_are_refused(api, tenant):
    """A call acts for one user: two `X-User-Id` lines (a proxy that appends its own) are 400, not the last."""
    key = [f"Bearer {tenant['key']}"]
    both = call_with_headers(api, "/v1/mailboxes", {"authorization": key, "x-user-id": ["u-alice", "u-bob"]})
    assert both.status == 400 and both.json["errors"][0]["field"] == "X-User-Id", both
    one = call_with_headers(api, "/v1/mailboxes", {"authorization": key, "x-user-id": ["u-alice"]})
    assert one.status == 200, one


def test_lowercase_scheme_and_extra_spaces_are_accepted_but_not_other_shapes(api, tenant):
    """RFC 9110 §11.1: the auth scheme is case-insensitive; the token follows one or more spaces."""
    key = tenant["key"]
    for header in (f"bearer {key}", f"BEARER {key}", f"Bearer   {key}", f"Bearer {key}  "):
        assert api("GET", "/v1/keys", headers={"authorization": header}).status == 200, header
    for header in (f"Basic {key}", f"Bearer{key}", f"Bearer {key}\x00", f"Bearer {key}é",
                   f"Bearer {key} {key}", "Bearer " + "A" * 100_000, "Bearer", ""):
        result = api("GET", "/v1/keys", headers={"authorization": header})
        assert result.status == 401 and result.json["type"].endswith("/unauthorized"), header[:40]


# ---- the plan's mailbox limit under concurrent creates -------------------------------------------------------

IMAP_BODY = {"name": "Sales", "type": "imap", "email": "sales@acme-crm.example", "kind": "shared",
             "password": "app-password",
             "imap": {"host": "127.0.0.1", "port": 993, "security": "tls", "login_method": "plain"},
             "smtp": {"host": "127.0.0.1", "port": 587, "security": "starttls", "login_method": "plain"}}


@pytest.fixture
def one_mailbox_plan(monkeypatch):
    monkeypatch.setitem(plans.PLANS, "standard", plans.Plan("standard", frozenset({plans.MAILBOX_CONNECTION}),
                                                            import_window_days=7, max_mailboxes=1))


def test_two_creates_racing_for_the_last_mailbox_slot_make_one_mailbox(api, tenant, one_mailbox_plan, monkeypatch):
    """The limit was a COUNT before the live login check and a save after it: two creates that both counted
    0 of 1 both saved (the login check takes seconds, so the window is wide). The second create here runs
    entirely inside the first one's login check — the interleaving two API processes produce."""
    inner, started = [], []

    def check_connection(**kw):
        if not started:
            started.append(True)
            inner.append(api("POST", "/v1/mailboxes", key=tenant["key"], json_body={**IMAP_BODY, "name": "Second"}))
        return verify.Outcome(True, None, "ok", None)

    monkeypatch.setattr(mailbox_service.verify, "check_connection", check_connection)
    outer = api("POST", "/v1/mailboxes", key=tenant["key"], json_body=IMAP_BODY)
    statuses = sorted([outer.status, inner[0].status])
    assert statuses == [201, 403], (outer, inner)
    refused = outer if outer.status == 403 else inner[0]
    assert refused.json["type"].endswith("/plan-limit") and "allows 1 mailboxes" in refused.json["detail"]
    assert Mailbox.count(tenant["id"]) == 1
    # a slot freed by a delete is usable again
    kept = outer if outer.status == 201 else inner[0]
    assert api("DELETE", f"/v1/mailboxes/{kept.json['id']}", key=tenant["key"]).status == 204
    again = api("POST", "/v1/mailboxes", key=tenant["key"], json_body={**IMAP_BODY, "name": "Third"})
    assert again.status == 201, again
    assert Mailbox.count(tenant["id"]) == 1


def test_an_oauth_create_racing_for_the_last_slot_is_refused(api, tenant, one_mailbox_plan, monkeypatch):
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Google", "type": "gmail", "oauth": {"client_id": "id.apps.googleusercontent.com",
                                                     "client_secret": "s3cret-value"}})
    assert server.status == 201, server
    real = mailbox_service._oauth_server
    inner, started = [], []

    def oauth_server(*args):
        if not started:
            started.append(True)
            inner.append(api("POST", "/v1/mailboxes", key=tenant["key"], json_body={**IMAP_BODY, "name": "IMAP"}))
        return real(*args)

    monkeypatch.setattr(mailbox_service, "_oauth_server", oauth_server)
    monkeypatch.setattr(mailbox_service.verify, "check_connection",
                        lambda **kw: verify.Outcome(True, None, "ok", None))
    outer = api("POST", "/v1/mailboxes", key=tenant["key"], json_body={
        "name": "Gmail", "type": "gmail", "email": "g@acme-crm.example", "kind": "shared",
        "mail_server_id": server.json["id"]})
    assert inner[0].status == 201, inner
    assert outer.status == 403 and outer.json["type"].endswith("/plan-limit"), outer
    assert Mailbox.count(tenant["id"]) == 1


# ---- a suspended tenant's mail -------------------------------------------------------------------------------

class RecordingProvider:
    """Stands in for the mailbox's provider: records what would have been submitted."""

    def __init__(self, sent: list):
        self.sent = sent

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def send(self, raw, *, sender, recipients, thread):
        self.sent.append(raw)
        return SendResult("prov-1", "thr-1")

    def append_sent_copy(self, raw):
        return None


def test_a_suspended_tenants_queued_send_is_not_submitted(api, tenant, operator_key, make_world):  # noqa: F811
    """Suspension stops the tenant's API calls and its syncs; the mail it queued or scheduled before must not
    keep going out on its behalf either (an operator suspends for abuse, too)."""
    world = make_world("personal")
    job = {"tenant_id": tenant["id"], "outbox_id": world["outbox"]}
    sent: list = []
    suspended = api("PATCH", f"/v1/admin/tenants/{tenant['id']}", key=operator_key, json_body={"status": "suspended"})
    assert suspended.status == 200
    assert delivery.on_message(job, provider_factory=lambda mailbox: RecordingProvider(sent)) == "failed"
    assert sent == []
    item = OutboxItem.get(tenant["id"], world["outbox"])
    assert item.status == "failed" and item.last_error["code"] == "tenant_suspended", item.last_error
    # once active again, what is queued goes out as before
    assert api("PATCH", f"/v1/admin/tenants/{tenant['id']}", key=operator_key,
               json_body={"status": "active"}).status == 200
    again = make_world("personal")
    assert delivery.on_message({"tenant_id": tenant["id"], "outbox_id": again["outbox"]},
                               provider_factory=lambda mailbox: RecordingProvider(sent)) == "sent"
    assert len(sent) == 1


# ---- operator and tenant keys stay apart ---------------------------------------------------------------------

def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "zz-exists-nowhere", path)


def test_the_operator_key_is_refused_on_every_tenant_route_and_tenant_keys_on_every_operator_route(
        api, tenant, operator_key):
    """Walks every declared route: the operator key is not a tenant key (401 before any lookup), and a tenant
    key — as the tenant or as one of its users — never reaches `/v1/admin` (401), whatever the body."""
    wrong = []
    assert sum(op.auth == "tenant" for op in OPERATIONS) > 50 and any(op.auth == "operator" for op in OPERATIONS)
    for op in OPERATIONS:
        body = {} if op.method in ("POST", "PUT", "PATCH") else None
        if op.auth == "tenant":
            result = api(op.method, _filled(op.path), key=operator_key, json_body=body)
            if result.status != 401 or not result.json["type"].endswith("/unauthorized"):
                wrong.append(("operator key", op.method, op.path, result.status))
        elif op.auth == "operator":
            assert op.path.startswith("/v1/admin/"), op.path
            for user in (None, "u-alice"):
                result = api(op.method, _filled(op.path), key=tenant["key"], user=user, json_body=body)
                if result.status != 401 or not result.json["type"].endswith("/unauthorized"):
                    wrong.append(("tenant key", user, op.method, op.path, result.status))
    assert wrong == []
    assert {op.path for op in OPERATIONS if op.path.startswith("/v1/admin")} == {
        op.path for op in OPERATIONS if op.auth == "operator"}, "an /v1/admin route that is not operator-only"


@pytest.mark.parametrize("host", ["imap\n.example.com", "imap.example\n.com", "imap\r\n.example.com"])
def test_a_mail_server_host_with_a_line_break_inside_is_refused(api, tenant, host):
    """`_LABEL.match` per label let "imap\\n" pass (`$` before a final "\\n"); only the whole host was stripped."""
    result = api("POST", "/v1/mail-servers", key=tenant["key"],
                 json_body={"name": "Preset", "type": "imap", "imap": {"host": host}})
    assert result.status == 422 and {e["field"] for e in result.json["errors"]} == {"imap.host"}, result


def test_the_keys_of_a_tenant_whose_item_is_gone_are_refused(api, tenant):
    """There is no tenant DELETE route; a tenant item removed by hand (or a half-made tenant) must not leave its
    keys working: its keys answer like a suspended tenant's, in this process once the cached entry is gone."""
    assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
    Tenant.get(tenant["id"]).delete()
    auth_cache.forget_all()     # what another process sees after MAILBRIDGE_AUTH_CACHE_SECONDS
    refused = api("GET", "/v1/mailboxes", key=tenant["key"])
    assert refused.status == 403 and refused.json["type"].endswith("/forbidden"), refused
