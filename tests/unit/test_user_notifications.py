"""Guards user notifications: settings per kind honoured (in_app / email / off), the right users per event,
the feed with unread count and mark-read, isolation between users and tenants, and email digests batched
to at most one per user per interval through the tenant's relay (a real aiosmtpd server on loopback)."""
from __future__ import annotations

import email

import pytest

from chalicelib.config import reset_settings
from chalicelib.ids import new_id
from chalicelib.models.mailbox import MailboxShare
from chalicelib.models.notification import Notification, NotificationRelay
from chalicelib.notify import digest, digest_mail, events, notifier
from chalicelib.notify import queue as notify_queue
from chalicelib.timeutil import now_iso
from devservers.smtp import SmtpServer
from tests.sync_helpers import FakeContext, receive_event
from tests.unit.pairing_fixtures import make_mailbox
from tests.webhook_helpers import FakeRecord, SimClock, SimQueue

MINUTE = 60


def share(mailbox, user_id: str, access: str) -> None:
    MailboxShare(mailbox.mailbox_id, user_id, tenant_id=mailbox.tenant_id, user_key=f"{mailbox.tenant_id}#{user_id}",
                 access=access, created_at=now_iso()).save()


@pytest.fixture
def world(api, tenant, aws, monkeypatch):
    clock = SimClock()
    queue = SimQueue(clock)
    monkeypatch.setattr(digest, "clock", clock)
    monkeypatch.setattr(notify_queue, "send", queue.send)
    mailbox = make_mailbox(tenant["id"], owner="u-owner")
    share(mailbox, "u-read", "read")
    share(mailbox, "u-rw", "read_write")

    class World:
        pass

    w = World()
    w.clock, w.queue, w.mailbox, w.tenant, w.api, w.aws = clock, queue, mailbox, tenant, api, aws

    def emit(event_type="message.created", **payload):
        payload = {"mailbox_id": mailbox.mailbox_id, **payload}
        event = events.emit(tenant["id"], event_type, payload)
        assert notifier.handle_batch(receive_event(aws["events_queue_url"], 10), FakeContext()) == \
            {"batchItemFailures": []}
        return event

    def feed(user, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        result = api("GET", f"/v1/users/{user}/notifications?{query}", key=tenant["key"], user=user)
        assert result.status == 200, result
        return result.json

    w.emit, w.feed = emit, feed
    return w


def test_settings_default_to_in_app_and_email_needs_an_address(api, tenant):
    """Unset kinds must read as in_app; choosing email without an address must be a 422 on `email`."""
    got = api("GET", "/v1/users/u-1/notification-settings", key=tenant["key"], user="u-1")
    assert got.status == 200 and got.json == {"user_id": "u-1", "email": None, "channels": {
        "new_mail": "in_app", "pairing_signal": "in_app", "mailbox_attention": "in_app"}}
    bad = api("PUT", "/v1/users/u-1/notification-settings", key=tenant["key"], user="u-1",
              json_body={"channels": {"new_mail": "email"}})
    assert bad.status == 422 and bad.json["errors"][0]["field"] == "email"
    assert api("PUT", "/v1/users/u-1/notification-settings", key=tenant["key"], user="u-1",
               json_body={"channels": {"new_mail": "carrier-pigeon"}}).status == 422
    ok = api("PUT", "/v1/users/u-1/notification-settings", key=tenant["key"], user="u-1",
             json_body={"channels": {"new_mail": "email", "mailbox_attention": "off"}, "email": "U1@Acme.example"})
    assert ok.status == 200 and ok.json["channels"] == {"new_mail": "email", "pairing_signal": "in_app",
                                                        "mailbox_attention": "off"}
    assert ok.json["email"] == "U1@acme.example"
    partial = api("PUT", "/v1/users/u-1/notification-settings", key=tenant["key"],
                  json_body={"channels": {"pairing_signal": "off"}})  # the tenant may set any user's
    assert partial.json["channels"]["new_mail"] == "email" and partial.json["channels"]["pairing_signal"] == "off"


def test_a_user_reaches_only_their_own_settings_and_feed(api, tenant, other_tenant):
    """Another user's settings or feed must be 404, and a user id in another tenant a different person."""
    assert api("GET", "/v1/users/u-2/notification-settings", key=tenant["key"], user="u-1").status == 404
    assert api("PUT", "/v1/users/u-2/notification-settings", key=tenant["key"], user="u-1",
               json_body={"channels": {"new_mail": "off"}}).status == 404
    assert api("GET", "/v1/users/u-2/notifications", key=tenant["key"], user="u-1").status == 404
    assert api("POST", "/v1/users/u-2/notifications/read", key=tenant["key"], user="u-1").status == 404
    api("PUT", "/v1/users/u-1/notification-settings", key=tenant["key"], json_body={"channels": {"new_mail": "off"}})
    other = api("GET", "/v1/users/u-1/notification-settings", key=other_tenant["key"], user="u-1")
    assert other.json["channels"]["new_mail"] == "in_app"


def test_events_reach_the_right_users_per_their_settings(world):
    """New mail must reach every reader, signals and attention only writers, and `off` must silence a kind."""
    world.api("PUT", "/v1/users/u-read/notification-settings", key=world.tenant["key"], user="u-read",
              json_body={"channels": {"mailbox_attention": "off"}})
    world.emit("message.created", message_id="msg_1", direction="inbound")
    world.emit("message.created", message_id="msg_2", direction="outbound")  # own sent mail: nobody
    world.emit("signal.created", signal_id="sig_1", message_id="msg_1")
    world.emit("mailbox.status_changed", status="auth_error", previous_status="active")
    world.emit("mailbox.status_changed", status="active", previous_status="auth_error")  # recovery: nobody
    world.emit("message.paired", message_id="msg_1")  # not a notification kind

    def kinds(user):
        return [n["kind"] for n in world.feed(user)["items"]]

    assert kinds("u-owner") == ["mailbox_attention", "pairing_signal", "new_mail"]
    assert kinds("u-rw") == ["mailbox_attention", "pairing_signal", "new_mail"]
    assert kinds("u-read") == ["new_mail"]
    assert kinds("u-stranger") == []
    item = world.feed("u-read")["items"][0]
    assert item["data"] == {"mailbox_id": world.mailbox.mailbox_id, "message_id": "msg_1"}
    assert item["channel"] == "in_app" and item["read_at"] is None


def test_expiry_warnings_reach_the_owner_and_read_write_users(world):
    """A push registration or client secret about to lapse must reach whoever can fix the mailbox (not readers)."""
    world.emit("mailbox.push_expiring", push_expires_at="2026-12-02T10:00:00Z", reason="topic not found")
    world.emit("mailbox.credentials_expiring", mail_server_id="srv_1", credential="client_secret",
               expires_at="2026-12-10", days_left=9)
    for user in ("u-owner", "u-rw"):
        items = world.feed(user)["items"]
        assert [(n["kind"], n["event_type"]) for n in items] == [
            ("mailbox_attention", "mailbox.credentials_expiring"), ("mailbox_attention", "mailbox.push_expiring")]
    assert world.feed("u-read")["items"] == []


def test_feed_unread_count_and_mark_read(world, other_tenant):
    """Unread count must follow mark-read (one and all); another tenant cannot mark or see the items."""
    for n in range(3):
        world.emit("message.created", message_id=f"msg_{n}")
    feed = world.feed("u-read")
    assert feed["unread_count"] == 3 and len(feed["items"]) == 3
    first = feed["items"][-1]["id"]
    key = world.tenant["key"]
    assert world.api("POST", f"/v1/users/u-read/notifications/{first}/read", key=other_tenant["key"],
                     user="u-read").status == 404
    assert world.api("POST", f"/v1/users/u-read/notifications/{first}/read", key=key, user="u-rw").status == 404
    marked = world.api("POST", f"/v1/users/u-read/notifications/{first}/read", key=key, user="u-read")
    assert marked.status == 200 and marked.json["read_at"]
    assert world.feed("u-read")["unread_count"] == 2
    unread = world.feed("u-read", unread="true")
    assert len(unread["items"]) == 2 and first not in {i["id"] for i in unread["items"]}
    page = world.feed("u-read", limit=2)
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = world.feed("u-read", limit=2, cursor=page["next_cursor"])
    assert [i["id"] for i in rest["items"]] == [first]
    assert world.api("POST", "/v1/users/u-read/notifications/read", key=key, user="u-read").json == {"marked": 2}
    assert world.feed("u-read")["unread_count"] == 0 and world.feed("u-owner")["unread_count"] == 3


def test_a_redelivered_event_notifies_once(world):
    """An SQS redelivery of the same event must not put it twice in anyone's feed."""
    event = world.emit("message.created", message_id="msg_1")
    body = {"tenant_id": world.tenant["id"], "event_id": event.event_id, "type": event.type}
    assert notifier.consume(FakeRecord(body, 1)) == "consumed"
    assert len(world.feed("u-owner")["items"]) == 1


def test_a_batch_of_events_notifies_once_keeps_read_marks_and_schedules_one_digest(world):
    """Guards the batched fan-out (one events message): each user once per event, one digest per user, and a
    redelivery must neither notify again nor mark read items unread."""
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    batch = [events.new_event(world.tenant["id"], "message.created",
                              {"mailbox_id": world.mailbox.mailbox_id, "message_id": f"msg_b{n}"}, new_id("evt"))
             for n in range(5)]
    body = {"kind": events.EVENTS_KIND, "tenant_id": world.tenant["id"],
            "events": [events.event_body(e) for e in batch]}
    assert notifier.consume(FakeRecord(body, 1)) == "consumed"
    digests = [b for _due, _n, b in world.queue.pending if b.get("kind") == digest.MESSAGE_KIND]
    assert [d["user_id"] for d in digests] == ["u-owner"]
    assert world.api("POST", "/v1/users/u-read/notifications/read", key=world.tenant["key"],
                     user="u-read").status == 200
    assert notifier.consume(FakeRecord(body, 2)) == "consumed"
    for user in ("u-owner", "u-read", "u-rw"):
        assert len(world.feed(user)["items"]) == 5
    assert world.feed("u-read")["unread_count"] == 0 and world.feed("u-rw")["unread_count"] == 5
    assert len([b for _due, _n, b in world.queue.pending if b.get("kind") == digest.MESSAGE_KIND]) == 1


@pytest.fixture
def smtp_relay(world):
    server = SmtpServer(lambda login, password: (login, password) == ("relay-user", "relay-pw")).start()
    result = world.api("PUT", "/v1/notification-relay", key=world.tenant["key"], json_body={
        "host": "127.0.0.1", "port": server.port, "security": "none", "username": "relay-user",
        "password": "relay-pw", "from_address": "notify@acme-crm.example", "digest_minutes": 15})
    assert result.status == 200, result
    yield server
    if server._controller._thread is not None:  # a test may have stopped it already
        server.stop()


def test_email_digests_are_batched_to_one_per_interval(world, smtp_relay):
    """A burst of events must become one digest now and one after the interval — never one mail per event."""
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    start = world.clock.now
    world.emit("message.created", message_id="msg_a")
    world.queue.run_until(start)
    assert len(smtp_relay.envelopes) == 1
    for minute, name in ((1, "msg_b"), (2, "msg_c"), (3, "msg_d")):
        world.queue.run_until(start + minute * MINUTE)
        world.emit("message.created", message_id=name)
    world.queue.run_until(start + 14 * MINUTE)
    assert len(smtp_relay.envelopes) == 1  # the interval has not passed
    world.queue.run_until(start + 16 * MINUTE)
    assert len(smtp_relay.envelopes) == 2
    world.queue.run_until(start + 120 * MINUTE)
    assert len(smtp_relay.envelopes) == 2 and not world.queue.pending
    (sender1, rcpt1, raw1), (_, _, raw2) = smtp_relay.envelopes
    assert sender1 == "notify@acme-crm.example" and rcpt1 == ["owner@acme-crm.example"]
    first, second = email.message_from_bytes(raw1), email.message_from_bytes(raw2)
    assert "msg_a" in first.get_payload() and first["Subject"] == "mailbridge: 1 new notification"
    assert all(m in second.get_payload() for m in ("msg_b", "msg_c", "msg_d")) and "msg_a" not in \
        second.get_payload()
    owner_feed = world.feed("u-owner")
    assert len(owner_feed["items"]) == 4 and all(i["emailed_at"] for i in owner_feed["items"])
    assert world.feed("u-read")["unread_count"] == 4 and not smtp_relay.envelopes[0][1] == ["u-read"]


def test_a_failed_digest_is_retried_and_keeps_its_items(world, smtp_relay):
    """An SMTP relay that is down must not lose the digest: it is retried and sent once the relay is back."""
    world.api("PUT", "/v1/users/u-rw/notification-settings", key=world.tenant["key"],
              json_body={"channels": {"pairing_signal": "email"}, "email": "rw@acme-crm.example"})
    smtp_relay.stop()
    world.emit("signal.created", signal_id="sig_1", message_id="msg_1")
    world.queue.run_until(world.clock.now)
    assert world.queue.delays[-1] == digest_mail.RETRY_SECONDS
    item = Notification.get(f"{world.tenant['id']}#u-rw", world.feed("u-rw")["items"][0]["id"])
    assert item.digest_key and item.emailed_at is None
    relay_back = SmtpServer(lambda login, password: password == "relay-pw").start()
    try:
        moved = world.api("PUT", "/v1/notification-relay", key=world.tenant["key"], json_body={
            "host": "127.0.0.1", "port": relay_back.port, "security": "none", "username": "relay-user",
            "from_address": "notify@acme-crm.example"})  # password omitted: the stored one is kept
        assert moved.status == 200
        world.queue.run_until(world.clock.now + digest_mail.RETRY_SECONDS)
        assert [e[1] for e in relay_back.envelopes] == [["rw@acme-crm.example"]]
    finally:
        relay_back.stop()


def test_a_digest_message_delivered_twice_at_once_mails_once(world, smtp_relay, monkeypatch):
    """Guards two digests for one: SQS delivered the `notify.digest` message to a second consumer while the
    first was still talking to the relay. The first claims the digest; the second finds it taken."""
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    real_submit, overlapped = digest_mail._submit, []

    def submit_while_redelivered(relay, recipient, items):
        if not overlapped:
            overlapped.append(None)
            body = {"kind": digest.MESSAGE_KIND, "tenant_id": world.tenant["id"], "user_id": "u-owner"}
            overlapped[0] = digest_mail.on_message(body, world.clock.now)
        real_submit(relay, recipient, items)

    monkeypatch.setattr(digest_mail, "_submit", submit_while_redelivered)
    world.emit("message.created", message_id="msg_a")
    world.queue.run_until(world.clock.now)
    assert overlapped and overlapped[0] != "sent" and len(smtp_relay.envelopes) == 1
    world.queue.run_until(world.clock.now + 60 * MINUTE)
    assert len(smtp_relay.envelopes) == 1
    [item] = world.feed("u-owner")["items"]
    assert item["emailed_at"]


def test_a_notification_arriving_while_a_digest_is_mailed_gets_the_next_digest(world, smtp_relay, monkeypatch):
    """Guards a notification left waiting with no digest scheduled: it arrived while the previous digest was
    being mailed (scheduling saw a due time and did nothing; the digest then cleared it)."""
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    real_submit = digest_mail._submit

    def submit_while_more_mail_arrives(relay, recipient, items):
        if not smtp_relay.envelopes:
            world.emit("message.created", message_id="msg_b")
        real_submit(relay, recipient, items)

    monkeypatch.setattr(digest_mail, "_submit", submit_while_more_mail_arrives)
    world.emit("message.created", message_id="msg_a")
    world.queue.run_until(world.clock.now)
    assert len(smtp_relay.envelopes) == 1
    world.queue.run_until(world.clock.now + 16 * MINUTE)
    assert len(smtp_relay.envelopes) == 2 and "msg_b" in email.message_from_bytes(smtp_relay.envelopes[1][2]
                                                                                  ).get_payload()
    assert all(i["emailed_at"] for i in world.feed("u-owner")["items"])


def test_relay_api_is_admin_only_write_only_and_guarded(api, tenant, monkeypatch):
    """The relay password must never be returned; plain-text and internal hosts must be refused outside local."""
    body = {"host": "127.0.0.1", "port": 2525, "security": "none", "username": "u", "from_address": "n@x.example"}
    assert api("PUT", "/v1/notification-relay", key=tenant["key"], json_body=body).json["errors"][0]["field"] == \
        "password"
    assert api("PUT", "/v1/notification-relay", key=tenant["key"], user="u-1",
               json_body={**body, "password": "pw-secret-1"}).status == 403
    saved = api("PUT", "/v1/notification-relay", key=tenant["key"], json_body={**body, "password": "pw-secret-1"})
    assert saved.status == 200 and saved.json["has_password"] is True and "pw-secret-1" not in saved.body
    got = api("GET", "/v1/notification-relay", key=tenant["key"])
    assert got.status == 200 and "password" not in got.json and "pw-secret-1" not in got.body
    assert "pw-secret-1" not in str(NotificationRelay.get(tenant["id"]).attribute_values)
    kept = api("PUT", "/v1/notification-relay", key=tenant["key"], json_body={**body, "digest_minutes": 60})
    assert kept.status == 200 and kept.json["has_password"] and kept.json["digest_minutes"] == 60

    monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "")
    monkeypatch.setenv("MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT", "false")
    reset_settings()
    try:
        plain = api("PUT", "/v1/notification-relay", key=tenant["key"], json_body=body)
        internal = api("PUT", "/v1/notification-relay", key=tenant["key"],
                       json_body={**body, "security": "starttls", "host": "10.0.0.5"})
    finally:
        monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
        monkeypatch.setenv("MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT", "true")
        reset_settings()
    assert plain.status == 422 and plain.json["errors"][0]["field"] == "security"
    assert internal.status == 422 and internal.json["errors"][0]["field"] == "host"
    assert api("DELETE", "/v1/notification-relay", key=tenant["key"]).status == 204
    assert api("GET", "/v1/notification-relay", key=tenant["key"]).status == 404


def test_a_digest_whose_queue_message_could_not_be_sent_is_not_stuck(world, smtp_relay, monkeypatch):
    """Guards a user's digests stopping for good: `schedule` set the due time, then SQS refused the message.
    The notifier's record was redelivered, but its notifications existed by then, so nothing scheduled
    again — and the due time, set with no message behind it, made every later `schedule` a no-op."""
    from chalicelib.notify import user_notifications
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    event = events.emit(world.tenant["id"], "message.created", {"mailbox_id": world.mailbox.mailbox_id,
                                                                "message_id": "msg_a"})
    real_send = world.queue.send

    def refused(body, delay):
        monkeypatch.setattr(notify_queue, "send", real_send)
        raise RuntimeError("SQS: ServiceUnavailable")

    monkeypatch.setattr(notify_queue, "send", refused)
    with pytest.raises(RuntimeError):
        user_notifications.on_events([event], world.clock.now)       # the record fails ...
    user_notifications.on_events([event], world.clock.now)           # ... and is redelivered
    world.queue.run_until(world.clock.now + 60 * MINUTE)
    assert len(smtp_relay.envelopes) == 1 and "msg_a" in email.message_from_bytes(
        smtp_relay.envelopes[0][2]).get_payload()


def test_a_digest_whose_message_was_lost_is_scheduled_again_by_the_next_notification(world, smtp_relay):
    """A `notify.digest` message that never comes back (dead-lettered after repeated failures, or lost between
    the due time's write and the send) left the due time set forever: no digest for that user again."""
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    world.emit("message.created", message_id="msg_a")
    assert len(world.queue.pending) == 1
    world.queue.pending.clear()                                       # the message is gone
    world.clock.now += 2 * 3600
    world.emit("message.created", message_id="msg_b")
    world.queue.run_until(world.clock.now + 60 * MINUTE)
    assert len(smtp_relay.envelopes) == 1
    body = email.message_from_bytes(smtp_relay.envelopes[0][2]).get_payload()
    assert "msg_a" in body and "msg_b" in body


def test_a_redelivered_event_whose_digest_was_mailed_queues_no_digest(world, smtp_relay):
    """The redelivery path schedules only for notifications still waiting: an event re-sent every hour (a
    stable-id warning re-emitted while its cause lasts) must not queue an empty digest each time."""
    from chalicelib.notify import user_notifications
    world.api("PUT", "/v1/users/u-owner/notification-settings", key=world.tenant["key"], user="u-owner",
              json_body={"channels": {"new_mail": "email"}, "email": "owner@acme-crm.example"})
    event = world.emit("message.created", message_id="msg_a")
    world.queue.run_until(world.clock.now + 60 * MINUTE)
    assert len(smtp_relay.envelopes) == 1 and not world.queue.pending
    user_notifications.on_events([event], world.clock.now)
    assert not world.queue.pending
