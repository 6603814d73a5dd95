"""Guards mailbox connect/update/test/share: field-named validation, verified-before-stored, visibility, and
passwords never leaving KMS envelopes (responses, stored items)."""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
from datetime import timedelta

import boto3
import pytest

from chalicelib.api.schemas.mailboxes import check_email
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.notify.events import list_events
from chalicelib.providers import kinds
from chalicelib.providers.base import ErrorCode, MailProvider, ProviderError
from chalicelib.security import ssrf
from chalicelib.security.crypto import decrypt_secrets
from chalicelib.timeutil import utcnow

PASSWORD = "Sup3r-Secret app password"
GENERIC = ("The mail server could not be reached: check the host name's spelling, the port, and the security mode "
           "(tls: implicit TLS, usually IMAP 993 / SMTP 465; starttls: usually IMAP 143 / SMTP 587).")


class FakeImap(MailProvider):
    """Stands in for the IMAP adapter: `test_connection` fails as `fake.failures[password]` says."""
    kind = "imap"

    def __init__(self, context, controller):
        self.context = context
        self.controller = controller
        controller.contexts.append(context)

    def test_connection(self):
        failure = self.controller.failures.get(self.context.secrets.get("password"))
        if failure is not None:
            raise failure

    def folders(self):
        return ["inbox", "sent"]

    def changes(self, folder, cursor, *, since, page_size):
        raise NotImplementedError

    def fetch(self, refs, *, max_bytes):
        raise NotImplementedError

    def send(self, raw, *, sender, recipients, thread=None):
        raise NotImplementedError


class FakeController:
    def __init__(self):
        self.contexts = []
        self.failures = {}


@pytest.fixture
def fake(monkeypatch):
    controller = FakeController()
    real = kinds.get_kind("imap")
    monkeypatch.setitem(kinds._KINDS, "imap", dataclasses.replace(
        real, factory=lambda context: FakeImap(context, controller)))
    return controller


@pytest.fixture
def dns(monkeypatch):
    """Names resolve through this table only (no network in unit tests)."""
    answers = {}

    def getaddrinfo(host, port, *args, **kwargs):
        try:
            address = answers[host] if host in answers else str(ipaddress.ip_address(host))
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "unknown") from None
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", getaddrinfo)
    return answers


def body(**overrides):
    data = {"name": "Sales", "type": "imap", "email": "alice@example.com", "sender_name": "Alice Nováková",
            "import_since": (utcnow().date() - timedelta(days=3)).isoformat(), "pairing_mode": "auto",
            "show_snippet": True, "kind": "personal", "signature_html": "<p>Alice</p>",
            "signature_on_replies": True,
            "imap": {"host": "127.0.0.1", "port": 993, "security": "tls", "username": "alice",
                     "login_method": "plain"},
            "smtp": {"host": "127.0.0.1", "port": 587, "security": "starttls", "username": "alice",
                     "login_method": "plain"},
            "password": PASSWORD}
    data.update(overrides)
    return data


def create(api, tenant, user="u-alice", **overrides):
    return api("POST", "/v1/mailboxes", key=tenant["key"], user=user, json_body=body(**overrides))


def fields(result):
    return {e["field"] for e in (result.json or {}).get("errors", [])}


def test_create_takes_named_sync_folders(api, tenant, fake, aws):
    """Guards against POST ignoring (or rejecting) named folders in sync_folders."""
    result = create(api, tenant, sync_folders=["INBOX", "Projects/Acme"])
    assert result.status == 201, result
    assert result.json["sync_folders"] == ["inbox", "Projects/Acme"]


def test_create_verifies_then_stores_active_with_every_field(api, tenant, fake, dns, aws):
    dns["imap.example.com"] = "127.0.0.5"
    result = create(api, tenant, imap={"host": "imap.example.com", "username": "alice"},
                    smtp={"host": "127.0.0.1", "security": "starttls"}, signature_html='<p onclick="x()">Hi<script>'
                    'alert(1)</script></p>')
    assert result.status == 201, result
    out = result.json
    assert out["id"].startswith("mbx_") and out["status"] == "active" and out["access"] == "owner"
    assert out["imap"] == {"host": "imap.example.com", "port": 993, "security": "tls", "username": "alice",
                           "login_method": "plain"}
    assert out["smtp"] == {"host": "127.0.0.1", "port": 587, "security": "starttls", "username": "alice",
                           "login_method": "plain"}
    assert out["kind"] == "personal" and out["owner_user_id"] == "u-alice" and out["has_password"] is True
    assert out["sender_name"] == "Alice Nováková" and out["pairing_mode"] == "auto"
    assert out["signature_html"] == "<p>Hi</p>" and out["signature_on_replies"] is True
    assert "password" not in out and PASSWORD not in result.body
    [context] = fake.contexts
    assert context.imap.host == "imap.example.com" and context.imap.address == "127.0.0.5"
    assert context.smtp.address == "127.0.0.1" and context.secrets == {"password": PASSWORD}
    stored = Mailbox.get(tenant["id"], out["id"])
    assert decrypt_secrets(tenant["id"], out["id"], stored.secret_ciphertext) == {"password": PASSWORD}
    assert stored.owner_key == f"{tenant['id']}#u-alice"
    jobs = boto3.client("sqs").receive_message(QueueUrl=aws["sync_queue_url"], MaxNumberOfMessages=10)
    assert [json.loads(m["Body"])["mailbox_id"] for m in jobs.get("Messages", [])] == [out["id"]]


def test_defaults_username_ports_and_import_window(api, tenant, fake):
    data = body()
    for key in ("import_since", "sender_name", "signature_html"):
        data.pop(key)
    data["imap"] = {"host": "127.0.0.1"}
    data["smtp"] = {"host": "127.0.0.1"}
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-alice", json_body=data)
    assert result.status == 201, result
    assert result.json["imap"]["port"] == 993 and result.json["imap"]["security"] == "tls"
    assert result.json["smtp"]["port"] == 587 and result.json["smtp"]["security"] == "starttls"
    assert result.json["imap"]["username"] == result.json["smtp"]["username"] == "alice@example.com"
    assert result.json["import_since"] == (utcnow().date() - timedelta(days=7)).isoformat()


INVALID_CASES = [
    ({"email": None}, "email"),
    ({"email": "not-an-address"}, "email"),
    ({"imap": {"host": "127.0.0.1", "port": 0}}, "imap.port"),
    ({"smtp": {"host": "127.0.0.1", "port": "x"}}, "smtp.port"),
    ({"imap": {"host": "imap.example.com/path"}}, "imap.host"),
    ({"imap": {"port": 993}}, "imap.host"),
    ({"smtp": None}, "smtp.host"),
    ({"import_since": (utcnow().date() - timedelta(days=8)).isoformat()}, "import_since"),
    ({"import_since": (utcnow().date() + timedelta(days=30)).isoformat()}, "import_since"),
    ({"import_since": "20.11.2026"}, "import_since"),
    ({"password": None}, "password"),
    ({"pairing_mode": "sometimes"}, "pairing_mode"),
    ({"sender_name": "Alice\r\nBcc: victim@example.com"}, "sender_name"),
    ({"type": "gmail"}, "imap"),            # OAuth kinds take no IMAP settings
    ({"mail_server_id": "srv_missing"}, "mail_server_id"),
    ({"colour": "red"}, "colour"),
    ({"sync_folders": ["Projects\x00"]}, "sync_folders"),
]


def test_validation_errors_name_the_field(api, tenant, fake):
    for overrides, field in INVALID_CASES:   # one moto world for all cases keeps the suite fast
        data = {k: v for k, v in body(**overrides).items() if v is not None}
        result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-alice", json_body=data)
        assert result.status == 422, (overrides, result)
        assert field in fields(result), (overrides, result.json)
    assert fake.contexts == []


def test_enterprise_window_and_tenant_setting_allow_more(api, operator_key, fake):
    created = api("POST", "/v1/admin/tenants", key=operator_key,
                  json_body={"name": "Long memory", "plan": "standard", "settings": {"import_window_days": 30}})
    tenant = {"id": created.json["id"], "key": created.json["api_key"]}
    since = (utcnow().date() - timedelta(days=30)).isoformat()
    assert create(api, tenant, import_since=since).status == 201
    too_old = (utcnow().date() - timedelta(days=31)).isoformat()
    assert fields(create(api, tenant, import_since=too_old)) == {"import_since"}


def test_plain_transport_refused_when_stage_disallows(api, tenant, fake, monkeypatch):
    from chalicelib.config import reset_settings
    insecure = {"host": "127.0.0.1", "port": 143, "security": "none"}
    with monkeypatch.context() as patch:
        patch.setenv("MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT", "false")
        reset_settings()
        result = create(api, tenant, imap=insecure)
        assert result.status == 422 and fields(result) == {"imap.security"}
    reset_settings()
    assert create(api, tenant, imap=insecure).status == 201


def test_free_plan_gets_feature_not_in_plan(api, operator_key, fake):
    created = api("POST", "/v1/admin/tenants", key=operator_key, json_body={"name": "Free", "plan": "free"})
    result = create(api, {"key": created.json["api_key"]})
    assert result.status == 403
    assert result.json["type"].endswith("/feature-not-in-plan")
    assert fake.contexts == []


def test_plan_mailbox_limit_is_enforced(api, tenant, fake, monkeypatch):
    """Guards the plan's max_mailboxes: one more than allowed is a 403 plan-limit and stores nothing."""
    from chalicelib.tenancy import plans
    monkeypatch.setitem(plans.PLANS, "standard", plans.Plan("standard", frozenset({plans.MAILBOX_CONNECTION}),
                                                            import_window_days=7, max_mailboxes=2))
    assert create(api, tenant).status == 201 and create(api, tenant).status == 201
    refused = create(api, tenant)
    assert refused.status == 403 and refused.json["type"].endswith("/plan-limit")
    assert Mailbox.count(tenant["id"]) == 2


def test_verification_failures_store_nothing(api, tenant, fake, dns):
    fake.failures["wrong"] = ProviderError(ErrorCode.AUTH_REVOKED, "LOGIN failed for alice / wrong")
    result = create(api, tenant, password="wrong")
    assert result.status == 422 and result.json["errors"] == [
        {"field": "password", "message": "the server refused the login"}]
    assert "wrong" not in result.json["detail"]
    fake.failures["tls"] = ProviderError(ErrorCode.PERMANENT, "TLS handshake failed: certificate verify failed "
                                                              "(hostname mismatch) while using tls")
    result = create(api, tenant, password="tls")
    assert result.status == 422 and "certificate" in result.json["detail"]
    assert fields(result) == {"imap"}
    assert api("GET", "/v1/mailboxes", key=tenant["key"]).json["items"] == []


def test_permanent_detail_never_echoes_the_password(api, tenant, fake):
    fake.failures[PASSWORD] = ProviderError(ErrorCode.PERMANENT, f"server said: bad command LOGIN alice {PASSWORD}")
    result = create(api, tenant)
    assert result.status == 422 and PASSWORD not in result.body


def test_internal_and_dead_hosts_read_exactly_the_same(api, tenant, fake, dns):
    """The API must not tell 'refused by the SSRF guard' from 'nothing answers' (network mapping)."""
    dns["metadata.attacker.example"] = "169.254.169.254"
    fake.failures["timeout"] = ProviderError(ErrorCode.TEMPORARY, "connect timed out")
    responses = [
        create(api, tenant, imap={"host": "10.0.0.7"}),
        create(api, tenant, imap={"host": "metadata.attacker.example"}),
        create(api, tenant, imap={"host": "no-such-host.example"}),
        create(api, tenant, imap={"host": "[::ffff:169.254.169.254]"}),
        create(api, tenant, password="timeout"),
    ]
    for result in responses:
        assert result.status == 422, result
        assert result.json["detail"] == GENERIC
        assert result.json["errors"] == [{"field": "imap.host", "message": GENERIC}]
    assert len({r.body for r in responses}) == 1
    assert len(fake.contexts) == 1  # only the public-looking (allowed) host was ever dialled



def test_stored_password_is_never_sent_to_a_new_host(api, tenant, fake, dns):
    """PATCHing only imap/smtp host made the service log in to that new host with the stored password."""
    dns["imap.elsewhere.example"] = "127.0.0.9"
    mailbox_id = create(api, tenant).json["id"]
    path = f"/v1/mailboxes/{mailbox_id}"
    dialled = len(fake.contexts)
    for change in ({"imap": {"host": "imap.elsewhere.example"}}, {"smtp": {"host": "imap.elsewhere.example"}},
                   {"imap": {"host": "imap.elsewhere.example"}, "smtp_password": "only-smtp"}):
        refused = api("PATCH", path, key=tenant["key"], user="u-alice", json_body=change)
        assert refused.status == 422 and fields(refused) == {"password"}, (change, refused)
    assert len(fake.contexts) == dialled
    assert Mailbox.get(tenant["id"], mailbox_id).imap["host"] == "127.0.0.1"
    moved = api("PATCH", path, key=tenant["key"], user="u-alice",
                json_body={"imap": {"host": "imap.elsewhere.example"}, "password": "for-the-new-host"})
    assert moved.status == 200, moved
    assert fake.contexts[-1].secrets == {"password": "for-the-new-host"}
    same_host = api("PATCH", path, key=tenant["key"], user="u-alice", json_body={"imap": {"port": 1993}})
    assert same_host.status == 200 and fake.contexts[-1].secrets == {"password": "for-the-new-host"}


def test_cross_tenant_ids_are_404(api, tenant, other_tenant, fake):
    mailbox_id = create(api, tenant).json["id"]
    key = other_tenant["key"]
    assert api("GET", f"/v1/mailboxes/{mailbox_id}", key=key).status == 404
    assert api("PATCH", f"/v1/mailboxes/{mailbox_id}", key=key, json_body={"name": "x"}).status == 404
    assert api("DELETE", f"/v1/mailboxes/{mailbox_id}", key=key).status == 404
    assert api("POST", f"/v1/mailboxes/{mailbox_id}/test", key=key).status == 404
    assert api("PUT", f"/v1/mailboxes/{mailbox_id}/shares/u-bob", key=key,
               json_body={"access": "read"}).status == 404
    assert api("GET", "/v1/mailboxes", key=key).json["items"] == []
    assert api("GET", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"]).status == 200


def test_user_visibility_owner_other_and_shared(api, tenant, fake):
    key = tenant["key"]
    mailbox_id = create(api, tenant).json["id"]
    path = f"/v1/mailboxes/{mailbox_id}"
    assert api("GET", path, key=key, user="u-alice").json["access"] == "owner"
    assert api("GET", path, key=key, user="u-bob").status == 404
    assert api("GET", "/v1/mailboxes", key=key, user="u-bob").json["items"] == []
    assert api("PUT", f"{path}/shares/u-carol", key=key, user="u-bob", json_body={"access": "read"}).status == 404

    shared = api("PUT", f"{path}/shares/u-bob", key=key, user="u-alice", json_body={"access": "read"})
    assert shared.status == 200 and shared.json["access"] == "read" and shared.json["user_id"] == "u-bob"
    assert api("GET", path, key=key, user="u-bob").json["access"] == "read"
    assert [m["id"] for m in api("GET", "/v1/mailboxes", key=key, user="u-bob").json["items"]] == [mailbox_id]
    assert api("PATCH", path, key=key, user="u-bob", json_body={"name": "mine"}).status == 403
    assert api("POST", f"{path}/test", key=key, user="u-bob").status == 403
    assert api("PUT", f"{path}/shares/u-carol", key=key, user="u-bob", json_body={"access": "read"}).status == 403
    assert api("DELETE", path, key=key, user="u-bob").status == 403

    upgraded = api("PUT", f"{path}/shares/u-bob", key=key, json_body={"access": "read_write"})
    assert upgraded.status == 200 and upgraded.json["created_at"] == shared.json["created_at"]
    assert api("GET", path, key=key, user="u-bob").json["access"] == "read_write"
    listed = api("GET", f"{path}/shares", key=key, user="u-alice").json["items"]
    assert [(s["user_id"], s["access"]) for s in listed] == [("u-bob", "read_write")]
    assert api("PUT", f"{path}/shares/u-alice", key=key, json_body={"access": "read"}).status == 422
    assert api("PUT", f"{path}/shares/bad%20user", key=key, json_body={"access": "read"}).status == 422

    assert api("DELETE", f"{path}/shares/u-bob", key=key, user="u-alice").status == 204
    assert api("GET", path, key=key, user="u-bob").status == 404
    assert api("DELETE", f"{path}/shares/u-bob", key=key, user="u-alice").status == 404


def test_ownership_rules_for_kinds(api, tenant, fake):
    key = tenant["key"]
    assert fields(create(api, tenant, user=None)) == {"owner_user_id"}
    by_admin = create(api, tenant, user=None, owner_user_id="u-dave")
    assert by_admin.status == 201 and by_admin.json["owner_user_id"] == "u-dave"
    assert api("GET", f"/v1/mailboxes/{by_admin.json['id']}", key=key, user="u-dave").json["access"] == "owner"
    assert create(api, tenant, user="u-alice", owner_user_id="u-dave").status == 403
    assert create(api, tenant, user="u-alice", kind="shared").status == 403
    shared = create(api, tenant, user=None, kind="shared", name="Support")
    assert shared.status == 201 and shared.json["owner_user_id"] is None and shared.json["kind"] == "shared"
    assert api("GET", f"/v1/mailboxes/{shared.json['id']}", key=key, user="u-alice").status == 404
    assert fields(create(api, tenant, user=None, kind="shared", owner_user_id="u-x")) == {"owner_user_id"}


def test_admin_lists_all_user_lists_own_and_shared_across_pages(api, tenant, fake):
    key = tenant["key"]
    own = [create(api, tenant, name=f"own{i}").json["id"] for i in range(2)]
    others = [create(api, tenant, user="u-bob", name=f"bob{i}").json["id"] for i in range(3)]
    for mailbox_id in others[:2]:
        api("PUT", f"/v1/mailboxes/{mailbox_id}/shares/u-alice", key=key, json_body={"access": "read"})
    seen, cursor, cursors = [], None, []
    for _ in range(10):
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = api("GET", f"/v1/mailboxes{query}", key=key, user="u-alice").json
        seen += [(m["id"], m["access"]) for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
        cursors.append(cursor)
    assert sorted(seen) == sorted([(i, "owner") for i in own] + [(i, "read") for i in others[:2]])
    everything = api("GET", "/v1/mailboxes?limit=200", key=key).json
    assert sorted(m["id"] for m in everything["items"]) == sorted(own + others)
    assert everything["next_cursor"] is None
    assert len(cursors) >= 3
    assert api("GET", f"/v1/mailboxes?cursor={cursors[0]}", key=key, user="u-bob").status == 400
    assert api("GET", f"/v1/mailboxes?cursor={cursors[0]}", key=key).status == 400


def test_a_users_own_mailboxes_list_whole_while_the_owner_index_holds_no_secret(api, tenant, fake):
    """Guards the `by_owner` index's narrow projection (keys, kind, owner): the list still shows whole mailboxes
    (read from the items), and the index never holds the sealed credentials or the sync state."""
    mailbox_id = create(api, tenant, name="Ann's inbox").json["id"]
    listed = api("GET", "/v1/mailboxes", key=tenant["key"], user="u-alice").json["items"]
    assert [(m["id"], m["name"], m["access"], m["has_password"]) for m in listed] == [
        (mailbox_id, "Ann's inbox", "owner", True)]
    assert listed[0] == api("GET", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"], user="u-alice").json
    entries = boto3.client("dynamodb").query(
        TableName=Mailbox.Meta.table_name, IndexName=Mailbox.by_owner.Meta.index_name,
        KeyConditionExpression="owner_key = :k", ExpressionAttributeValues={":k": {"S": f"{tenant['id']}#u-alice"}},
    )["Items"]
    assert len(entries) == 1 and set(entries[0]) == {"tenant_id", "mailbox_id", "owner_key", "kind", "owner_user_id"}


def test_patch_reverifies_only_connection_changes(api, tenant, fake):
    mailbox_id = create(api, tenant).json["id"]
    path = f"/v1/mailboxes/{mailbox_id}"
    result = api("PATCH", path, key=tenant["key"], user="u-alice",
                 json_body={"name": "Renamed", "sender_name": None, "pairing_mode": "signal",
                            "signature_html": "<b>x</b><img src=x onerror=alert(1)>"})
    assert result.status == 200, result
    assert result.json["name"] == "Renamed" and result.json["sender_name"] is None
    assert result.json["pairing_mode"] == "signal" and "onerror" not in result.json["signature_html"]
    assert len(fake.contexts) == 1

    fake.failures["new-but-wrong"] = ProviderError(ErrorCode.AUTH_REVOKED, "no")
    refused = api("PATCH", path, key=tenant["key"], user="u-alice",
                  json_body={"password": "new-but-wrong", "imap": {"port": 1993}})
    assert refused.status == 422 and fields(refused) == {"password"}
    stored = Mailbox.get(tenant["id"], mailbox_id)
    assert stored.imap["port"] == 993
    assert decrypt_secrets(tenant["id"], mailbox_id, stored.secret_ciphertext) == {"password": PASSWORD}

    changed = api("PATCH", path, key=tenant["key"], user="u-alice",
                  json_body={"password": "rotated", "smtp_password": "smtp-only", "imap": {"port": 1993}})
    assert changed.status == 200 and changed.json["imap"]["port"] == 1993
    assert fake.contexts[-1].secrets == {"password": "rotated", "smtp_password": "smtp-only"}
    stored = Mailbox.get(tenant["id"], mailbox_id)
    assert decrypt_secrets(tenant["id"], mailbox_id, stored.secret_ciphertext) == {
        "password": "rotated", "smtp_password": "smtp-only"}
    assert fields(api("PATCH", path, key=tenant["key"], json_body={"kind": "shared"})) == {"kind"}
    too_old = (utcnow().date() - timedelta(days=9)).isoformat()
    assert fields(api("PATCH", path, key=tenant["key"], json_body={"import_since": too_old})) == {"import_since"}


def test_preset_supplies_host_port_security(api, tenant, fake):
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Local", "type": "imap", "imap": {"host": "127.0.0.1", "port": 1143, "security": "starttls"},
        "smtp": {"host": "127.0.0.2", "port": 2525, "security": "starttls"}}).json
    data = body(mail_server_id=server["id"])
    data.pop("imap")
    data["smtp"] = {"username": "alice-smtp"}
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-alice", json_body=data)
    assert result.status == 201, result
    assert result.json["mail_server_id"] == server["id"]
    assert result.json["imap"] == {"host": "127.0.0.1", "port": 1143, "security": "starttls",
                                   "username": "alice@example.com", "login_method": "plain"}
    assert result.json["smtp"]["host"] == "127.0.0.2" and result.json["smtp"]["username"] == "alice-smtp"


def test_connection_test_flips_status_and_emits_events(api, tenant, fake):
    mailbox_id = create(api, tenant).json["id"]
    path = f"/v1/mailboxes/{mailbox_id}/test"
    ok = api("POST", path, key=tenant["key"], user="u-alice")
    assert ok.status == 200 and ok.json["ok"] is True and ok.json["status"] == "active"

    fake.failures[PASSWORD] = ProviderError(ErrorCode.TEMPORARY, "connection reset")
    down = api("POST", path, key=tenant["key"], user="u-alice").json
    assert down == {"ok": False, "detail": GENERIC, "status": "active"}

    fake.failures[PASSWORD] = ProviderError(ErrorCode.AUTH_REVOKED, "AUTHENTICATIONFAILED")
    refused = api("POST", path, key=tenant["key"], user="u-alice")
    assert refused.status == 200 and refused.json["ok"] is False and refused.json["status"] == "auth_error"
    got = api("GET", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"]).json
    assert got["status"] == "auth_error" and got["status_reason"]

    del fake.failures[PASSWORD]
    back = api("POST", path, key=tenant["key"]).json
    assert back["ok"] is True and back["status"] == "active"
    events = [e.payload for e in reversed(list_events(tenant["id"], "mailbox.status_changed"))]
    assert [(e["previous_status"], e["status"]) for e in events] == [("active", "auth_error"),
                                                                     ("auth_error", "active")]
    assert all(e["mailbox_id"] == mailbox_id for e in events)


def test_patching_the_password_reactivates_an_auth_error_mailbox(api, tenant, fake):
    mailbox_id = create(api, tenant).json["id"]
    fake.failures[PASSWORD] = ProviderError(ErrorCode.AUTH_REVOKED, "revoked")
    api("POST", f"/v1/mailboxes/{mailbox_id}/test", key=tenant["key"])
    fixed = api("PATCH", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"], json_body={"password": "fresh"})
    assert fixed.status == 200 and fixed.json["status"] == "active" and fixed.json["status_reason"] is None
    assert len(list_events(tenant["id"], "mailbox.status_changed")) == 2


def test_delete_removes_mailbox_and_shares(api, tenant, fake):
    mailbox_id = create(api, tenant).json["id"]
    api("PUT", f"/v1/mailboxes/{mailbox_id}/shares/u-bob", key=tenant["key"], json_body={"access": "read"})
    assert api("DELETE", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"], user="u-alice").status == 204
    assert api("GET", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"]).status == 404
    assert list(MailboxShare.query(mailbox_id)) == []
    assert api("GET", "/v1/mailboxes", key=tenant["key"], user="u-bob").json["items"] == []


def test_password_is_in_no_response_and_no_stored_item(api, tenant, fake):
    bodies = []
    created = create(api, tenant, smtp_password=PASSWORD + "-smtp")
    mailbox_id = created.json["id"]
    bodies.append(created.body)
    for method, path, payload in [
        ("GET", f"/v1/mailboxes/{mailbox_id}", None), ("GET", "/v1/mailboxes", None),
        ("PATCH", f"/v1/mailboxes/{mailbox_id}", {"password": PASSWORD, "name": "n"}),
        ("POST", f"/v1/mailboxes/{mailbox_id}/test", None),
        ("PUT", f"/v1/mailboxes/{mailbox_id}/shares/u-bob", {"access": "read"}),
        ("GET", f"/v1/mailboxes/{mailbox_id}/shares", None),
    ]:
        result = api(method, path, key=tenant["key"], json_body=payload)
        assert result.status < 300, result
        bodies.append(result.body)
    fake.failures[PASSWORD] = ProviderError(ErrorCode.AUTH_REVOKED, f"refused {PASSWORD}")
    bodies.append(api("POST", f"/v1/mailboxes/{mailbox_id}/test", key=tenant["key"]).body)
    bodies.append(api("GET", f"/v1/mailboxes/{mailbox_id}", key=tenant["key"]).body)
    assert all(PASSWORD not in b for b in bodies)
    client = boto3.client("dynamodb")
    scanned = 0
    for table in client.list_tables()["TableNames"]:
        for item in client.scan(TableName=table)["Items"]:
            scanned += 1
            assert PASSWORD not in json.dumps(item, default=str), table
    assert scanned >= 3


def test_email_with_an_international_domain_is_kept_as_a_labels():
    """Guards the address rule of the send, mailbox and notification inputs: an international domain in
    U-labels is accepted as its A-labels (RFC 5891), a non-ASCII local part (needs SMTPUTF8) is not."""
    assert check_email("Jan@München.Example") == "Jan@xn--mnchen-3ya.example"
    assert check_email("jan@xn--mnchen-3ya.example") == "jan@xn--mnchen-3ya.example"
    for refused in ("jiří@example.com", "jan@exa mple.com", "jan@-bad-.example", "jan@"):
        with pytest.raises(ValueError):
            check_email(refused)
