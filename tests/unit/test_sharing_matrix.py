"""Guards the sharing model end to end: a `read` share that could act (unpair, create records, accept
signals), or an outsider who could learn that a mailbox or message exists. Every (actor × route) pair is
called on fresh state — of a personal mailbox, and of a shared (corporate) one, which has no owner user and
is managed by the tenant admin — and must answer the documented outcome (docs/api.md "Access levels"): no access → 404,
visible but below the route's level → 403 `insufficient-access` with nothing changed, else success.

Extension point: a new route that acts on a mailbox, message, conversation or outbox item is one more `Case`
in `CASES` with the level it needs. Sending answers 404 (not 403) below read_write (`below=404`, docs/api.md).

The tenant's pairing and settings routes (rules, pairing settings, directory records, privacy lists and
settings, erasure, webhook, API keys, mail servers, audit) act for the tenant: the admin changes them, every
user gets 403 `forbidden` and changes nothing; a user's notification settings, feed and privacy lists are
theirs alone (another user's answer 404). `TENANT_CASES` walks those for the same actors.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from chalicelib.api.access import LEVELS
from chalicelib.api.schemas.outbox import SendRequest
from chalicelib.mailboxes import service as mailbox_service, verify
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.pairing import Signal
from chalicelib.outbox import service as outbox_service
from chalicelib.pairing import directory, engine, manual
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from chalicelib.timeutil import now_iso
from tests.mailfactory import make_message
from tests.unit.pairing_fixtures import make_mailbox

# actor → (X-User-Id, level on the mailbox, level on the message)
ACTORS = {
    "owner": ("u-owner", "owner", "owner"),
    "admin": (None, "owner", "owner"),
    "read_write": ("u-writer", "read_write", "read_write"),
    "read": ("u-reader", "read", "read"),
    "record_reader": ("u-recorder", None, "read"),   # sees the message only through a record's readers
    "none": ("u-stranger", None, None),
}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str          # {mailbox}, {message}, {signal} are filled in
    need: str          # read | read_write | owner
    ok: int
    body: dict | None = None
    on: str = "mailbox"   # whose level decides: "mailbox" or "message"
    accept: str | None = None
    below: int = 403      # what a caller who sees it but lacks `need` gets


BINARY = "*/*"
CASES = [
    # messages
    Case("list messages", "GET", "/v1/mailboxes/{mailbox}/messages", "read", 200),
    Case("message detail", "GET", "/v1/messages/{message}", "read", 200, on="message"),
    Case("raw message", "GET", "/v1/messages/{message}/raw", "read", 200, on="message", accept=BINARY),
    Case("attachment", "GET", "/v1/messages/{message}/attachments/0", "read", 200, on="message", accept=BINARY),
    Case("hide message", "DELETE", "/v1/messages/{message}", "read_write", 204, on="message"),
    Case("mark private", "PUT", "/v1/messages/{message}/privacy", "read_write", 200, {"private": True},
         on="message"),
    Case("search a mailbox", "GET", "/v1/messages/search?q=info&mailbox_id={mailbox}", "read", 200),
    # conversations
    Case("list conversations", "GET", "/v1/threads?mailbox_id={mailbox}", "read", 200),
    Case("conversation", "GET", "/v1/threads/{thread}", "read", 200, on="message"),
    Case("mark conversation private", "PUT", "/v1/threads/{thread}/privacy", "read_write", 200, {"private": True},
         on="message"),
    # pairing
    Case("pair by hand", "POST", "/v1/messages/{message}/links", "read_write", 201, {"type": "project", "id": "pr-2"},
         on="message"),
    Case("unpair", "DELETE", "/v1/messages/{message}/links/project/pr-1", "read_write", 204, on="message"),
    Case("create record", "POST", "/v1/messages/{message}/create-record", "read_write", 201, {"type": "project"},
         on="message"),
    Case("list signals", "GET", "/v1/signals?mailbox_id={mailbox}", "read", 200),
    Case("accept signal", "POST", "/v1/signals/{signal}/accept", "read_write", 200),
    Case("dismiss signal", "POST", "/v1/signals/{signal}/dismiss", "read_write", 200),
    # mailbox settings and sync
    Case("read mailbox", "GET", "/v1/mailboxes/{mailbox}", "read", 200),
    Case("change mailbox", "PATCH", "/v1/mailboxes/{mailbox}", "owner", 200, {"name": "Renamed"}),
    Case("connection test", "POST", "/v1/mailboxes/{mailbox}/test", "owner", 200),
    # an IMAP mailbox has no consent link: the owner passes the access check and gets 422 on `type`
    Case("consent link", "POST", "/v1/mailboxes/{mailbox}/authorize", "owner", 422, {}),
    Case("list shares", "GET", "/v1/mailboxes/{mailbox}/shares", "owner", 200),
    Case("share", "PUT", "/v1/mailboxes/{mailbox}/shares/u-new", "owner", 200, {"access": "read"}),
    Case("unshare", "DELETE", "/v1/mailboxes/{mailbox}/shares/u-reader", "owner", 204),
    Case("refresh", "POST", "/v1/mailboxes/{mailbox}/refresh", "read_write", 202),
    Case("sync status", "GET", "/v1/mailboxes/{mailbox}/sync", "read", 200),
    Case("disconnect", "DELETE", "/v1/mailboxes/{mailbox}", "owner", 204),
    # sending and the outbox
    Case("send", "POST", "/v1/mailboxes/{mailbox}/send", "read_write", 202,
         {"to": ["info@customer.example"], "subject": "Offer", "text": "Hello"}, below=404),
    Case("outbox item", "GET", "/v1/outbox/{outbox}", "read", 200),
    Case("cancel outbox item", "POST", "/v1/outbox/{outbox}/cancel", "read_write", 200),
]


def expected(case: Case, actor: str, kind: str = "personal") -> int:
    _, on_mailbox, on_message = ACTORS[actor]
    if kind == "shared" and actor == "owner":      # a shared mailbox has no owner user: u-owner is nobody
        on_mailbox = on_message = None
    level = on_message if case.on == "message" else on_mailbox
    if level is None:
        return 404
    return case.ok if LEVELS[level] >= LEVELS[case.need] else case.below


@pytest.fixture
def make_world(api, tenant, monkeypatch):
    """Builds, per call, a signal-mode personal mailbox of u-owner shared read / read_write, one stored
    message with an attachment, a manual link to project pr-1 (readers: u-recorder) and an open signal for
    company c-1 (records are shared by the worlds of the tenant)."""
    monkeypatch.setattr(mailbox_service.verify, "check_connection",
                        lambda **kw: verify.Outcome(True, None, "ok", None))
    tenant_id = tenant["id"]
    directory.put_record(tenant_id, "company", "c-1", {"name": "Customer", "emails": ["info@customer.example"]})
    directory.put_record(tenant_id, "project", "pr-1", {"name": "P1", "readers": ["u-recorder"]})
    directory.put_record(tenant_id, "project", "pr-2", {"name": "P2"})

    def build(kind: str = "personal") -> dict:
        mailbox = make_mailbox(tenant_id, "signal", owner="u-owner" if kind == "personal" else None,
                               email="owner@acme-crm.example", kind=kind)
        for user, level in (("u-reader", "read"), ("u-writer", "read_write")):
            MailboxShare(mailbox.mailbox_id, user, tenant_id=tenant_id, user_key=f"{tenant_id}#{user}",
                         access=level, created_at=now_iso()).save()
        raw = make_message(from_="Info <info@customer.example>", to="owner@acme-crm.example",
                           attachments=[("a.pdf", "application/pdf", b"%PDF-1.4 test")])
        message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message
        manual.link_manually(message, "project", "pr-1", None)
        [signal_id] = engine.pair_message(message).signals
        item, _ = outbox_service.accept(mailbox, None, SendRequest(to=["info@customer.example"], text="Queued"),
                                        None, None)
        return {"tenant": tenant, "mailbox": mailbox, "message": Message.get(message.message_id),
                "signal": signal_id, "outbox": item.outbox_id}
    return build


def state(world) -> tuple:
    """What any write route would change."""
    message = Message.get(world["message"].message_id)
    try:
        mailbox = Mailbox.get(world["tenant"]["id"], world["mailbox"].mailbox_id)
    except Mailbox.DoesNotExist:
        mailbox = None
    signal = Signal.get(world["tenant"]["id"], world["signal"])
    shares = sorted((s.user_id, s.access) for s in MailboxShare.query(world["mailbox"].mailbox_id))
    outbox = sorted((i.outbox_id, i.status) for i in OutboxItem.query(world["tenant"]["id"])
                    if i.mailbox_id == world["mailbox"].mailbox_id)
    return (bool(message.hidden), bool(message.private), int(message.link_count or 0), signal.status,
            mailbox and mailbox.name, mailbox and mailbox.last_refresh_at, shares, outbox)


def call(api, world, case: Case, user: str | None):
    path = case.path.format(mailbox=world["mailbox"].mailbox_id, message=world["message"].message_id,
                            signal=world["signal"], outbox=world["outbox"], thread=world["message"].conversation_id)
    headers = {"Accept": case.accept} if case.accept else None
    return api(case.method, path, key=world["tenant"]["key"], user=user, json_body=case.body, headers=headers)


@pytest.mark.parametrize("kind,actor", [("personal", a) for a in ACTORS]
                         + [("shared", a) for a in ACTORS])
def test_sharing_matrix(api, make_world, kind: str, actor: str):
    user = ACTORS[actor][0]
    wrong = []
    shared = make_world(kind)      # reads and refused writes leave it as it was (asserted below)
    for case in CASES:
        allowed_write = case.method != "GET" and expected(case, actor, kind) < 300
        world = make_world(kind) if allowed_write else shared
        before = state(world)
        result = call(api, world, case, user)
        want = expected(case, actor, kind)
        if result.status != want:
            wrong.append((case.name, want, result.status, result.body[:200]))
            continue
        if want == 403 and not (result.json["type"].endswith("/insufficient-access")
                                and result.json["required"] == case.need):
            wrong.append((case.name, "insufficient-access problem", result.json))
        if want in (403, 404) and state(world) != before:
            wrong.append((case.name, "a refused call changed something"))
        if want == 404 and not (result.json["type"].endswith("/not-found") and "Customer" not in result.body):
            wrong.append((case.name, "404 problem without details", result.json))
        if want < 300 and case.method != "GET" and state(world) == before and case.name != "connection test":
            wrong.append((case.name, "an allowed write changed nothing"))
    assert wrong == [], f"{kind} mailbox, {actor}: {wrong}"


def test_matrix_covers_every_mailbox_and_message_route():
    """Guards against a new mailbox/message/pairing route escaping the matrix (add a Case for it)."""
    from chalicelib.api.routing import OPERATIONS
    covered = {(c.method, c.path.split("?")[0]) for c in CASES}
    placeholders = {"{mailbox_id}": "{mailbox}", "{message_id}": "{message}", "{signal_id}": "{signal}",
                    "{record_type}/{entity_id}": "project/pr-1", "{index}": "0", "{user_id}": "u-new",
                    "{outbox_id}": "{outbox}", "{thread_id}": "{thread}"}
    missing = set()
    for op in OPERATIONS:
        if not op.path.startswith(("/v1/mailboxes/{", "/v1/messages/", "/v1/signals/", "/v1/outbox/", "/v1/threads/")):
            continue
        path = op.path
        for old, new in placeholders.items():
            path = path.replace(old, new)
        if (op.method, path) not in covered and (op.method, path.replace("u-new", "u-reader")) not in covered:
            missing.add((op.method, op.path))
    assert missing == set()


@dataclass(frozen=True)
class TenantCase:
    name: str
    method: str
    path: str          # {mailbox} and {user} (the caller, or u-owner for the admin) are filled in
    ok: int
    body: dict | None = None
    user_scoped: bool = False   # a user reaches their own (ok) and no one else's (404); else tenant-only (403)


TENANT_CASES = [
    TenantCase("list rules", "GET", "/v1/rules", 200),
    TenantCase("add a mailbox rule", "POST", "/v1/rules", 201,
               {"name": "stop", "mailbox_id": "{mailbox}", "actions": [{"type": "stop"}]}),
    TenantCase("pairing settings", "GET", "/v1/pairing/settings", 200),
    TenantCase("change pairing settings", "PUT", "/v1/pairing/settings", 200, {"domain_match": False}),
    TenantCase("put a directory record", "PUT", "/v1/directory/company/c-9", 200, {"name": "New"}),
    TenantCase("own notification settings", "GET", "/v1/users/{user}/notification-settings", 200, user_scoped=True),
    TenantCase("change own notification settings", "PUT", "/v1/users/{user}/notification-settings", 200,
               {"channels": {"new_mail": "off"}}, user_scoped=True),
    TenantCase("another user's notification settings", "PUT", "/v1/users/u-other/notification-settings", 200,
               {"channels": {"new_mail": "off"}}, user_scoped=True),
    TenantCase("own notification feed", "GET", "/v1/users/{user}/notifications", 200, user_scoped=True),
    TenantCase("another user's notification feed", "GET", "/v1/users/u-other/notifications", 200,
               user_scoped=True),
    TenantCase("mark another user's feed read", "POST", "/v1/users/u-other/notifications/read", 200, {},
               user_scoped=True),
    TenantCase("own privacy lists", "GET", "/v1/users/{user}/privacy-lists", 200, user_scoped=True),
    TenantCase("another user's privacy lists", "GET", "/v1/users/u-other/privacy-lists", 200, user_scoped=True),
    TenantCase("change another user's privacy lists", "PUT", "/v1/users/u-other/privacy-lists", 200,
               {"never_import": ["@customer.example"]}, user_scoped=True),
    TenantCase("tenant privacy lists", "PUT", "/v1/privacy/lists", 200, {"never_import": ["@customer.example"]}),
    TenantCase("privacy settings", "PUT", "/v1/privacy/settings", 200, {"retention_days": 30}),
    TenantCase("tenant-wide erasure", "POST", "/v1/erasure", 202, {"email": "nobody@nowhere.example"}),
    TenantCase("webhook", "GET", "/v1/webhook", 404),
    TenantCase("set the webhook", "PUT", "/v1/webhook", 200, {"url": "http://127.0.0.1:9/hook"}),
    TenantCase("API keys", "GET", "/v1/keys", 200),
    TenantCase("create an API key", "POST", "/v1/keys", 201, {"name": "user's own key"}),
    TenantCase("mail servers", "GET", "/v1/mail-servers", 200),
    TenantCase("create a mail server", "POST", "/v1/mail-servers", 201,
               {"name": "B", "type": "imap", "imap": {"host": "imap.other.example"}}),
    TenantCase("audit log", "GET", "/v1/audit", 200),
]


def tenant_state(api, world) -> tuple:
    """What a refused tenant-level write could have changed (read as the tenant admin)."""
    key = world["tenant"]["key"]
    rules = sorted(r["id"] for r in api("GET", "/v1/rules", key=key).json["items"])
    settings = api("GET", "/v1/pairing/settings", key=key).json
    record = api("GET", "/v1/directory/company/c-9", key=key).status
    other = api("GET", "/v1/users/u-other/notification-settings", key=key).json["channels"]
    other_lists = api("GET", "/v1/users/u-other/privacy-lists", key=key).json
    tenant_lists = api("GET", "/v1/privacy/lists", key=key).json
    privacy = api("GET", "/v1/privacy/settings", key=key).json
    webhook = api("GET", "/v1/webhook", key=key).status
    keys = sorted(k["id"] for k in api("GET", "/v1/keys", key=key).json["items"])
    servers = sorted(s["id"] for s in api("GET", "/v1/mail-servers", key=key).json["items"])
    return rules, settings, record, other, other_lists, tenant_lists, privacy, webhook, keys, servers


@pytest.mark.parametrize("actor", list(ACTORS))
def test_tenant_pairing_and_settings_routes(api, make_world, actor: str):
    user = ACTORS[actor][0]
    world = make_world("personal")
    wrong = []
    for case in TENANT_CASES:
        body = None if case.body is None else {k: (v.format(mailbox=world["mailbox"].mailbox_id)
                                                   if isinstance(v, str) else v) for k, v in case.body.items()}
        path = case.path.format(user=user or "u-owner")
        if user is None:
            want = case.ok
        elif case.user_scoped:
            want = 404 if "u-other" in path else case.ok
        else:
            want = 403
        before = tenant_state(api, world)
        result = api(case.method, path, key=world["tenant"]["key"], user=user, json_body=body)
        if result.status != want:
            wrong.append((case.name, want, result.status, result.body[:200]))
        elif want == 403 and not result.json["type"].endswith("/forbidden"):
            wrong.append((case.name, "forbidden problem", result.json))
        if want in (403, 404) and tenant_state(api, world) != before:
            wrong.append((case.name, "a refused call changed something"))
    assert wrong == [], f"{actor}: {wrong}"
