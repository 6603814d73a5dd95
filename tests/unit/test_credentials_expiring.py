"""Guards `mailbox.credentials_expiring`: a client secret expiry recorded on the OAuth app that nobody hears
about, a warning repeated every hour, or one that skips the mailbox's users."""
from __future__ import annotations

from datetime import date, timedelta

from chalicelib.models.mailbox import MailboxShare
from chalicelib.notify import events, notifier
from chalicelib.sync import credential_expiry, renewer
from chalicelib.timeutil import now_iso
from tests.sync_helpers import FakeContext, make_mailbox, receive_event

TODAY = date(2026, 12, 1)


def oauth_world(api, tenant, expires: date):
    created = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Contoso", "type": "outlook",
        "oauth": {"client_id": "app-1", "client_secret": "s3cr3t-value", "ms_tenant": "organizations",
                  "client_secret_expires_at": expires.isoformat()}})
    assert created.status == 201, created
    assert created.json["oauth"]["client_secret_expires_at"] == expires.isoformat()
    assert "s3cr3t-value" not in created.body
    mailbox = make_mailbox(tenant["id"], mailbox_type="outlook", mail_server_id=created.json["id"])
    for user, access in (("u-rw", "read_write"), ("u-read", "read")):
        MailboxShare(mailbox.mailbox_id, user, tenant_id=tenant["id"], user_key=f"{tenant['id']}#{user}",
                     access=access, created_at=now_iso()).save()
    return mailbox, created.json["id"]


def test_a_secret_expiring_within_two_weeks_warns_once_and_reaches_the_users(api, tenant, aws):
    mailbox, _ = oauth_world(api, tenant, TODAY + timedelta(days=10))
    assert credential_expiry.check(mailbox, today=TODAY) is True
    assert credential_expiry.check(mailbox, today=TODAY + timedelta(days=1)) is True       # the next hour/day
    [event] = events.list_events(tenant["id"], "mailbox.credentials_expiring")
    assert event.payload == {"mailbox_id": mailbox.mailbox_id, "mail_server_id": mailbox.mail_server_id,
                             "credential": "client_secret", "expires_at": "2026-12-11", "days_left": 10}
    assert notifier.handle_batch(receive_event(aws["events_queue_url"], 10), FakeContext()) == \
        {"batchItemFailures": []}
    feed = api("GET", "/v1/users/u-rw/notifications", key=tenant["key"], user="u-rw").json
    assert [n["kind"] for n in feed["items"]] == ["mailbox_attention"]


def test_a_distant_or_unknown_expiry_is_quiet_and_a_new_date_warns_again(api, tenant, aws):
    mailbox, server_id = oauth_world(api, tenant, TODAY + timedelta(days=60))
    assert credential_expiry.check(mailbox, today=TODAY) is False
    patched = api("PATCH", f"/v1/mail-servers/{server_id}", key=tenant["key"],
                  json_body={"oauth": {"client_secret": "rotated", "client_secret_expires_at": "2026-12-05"}})
    assert patched.status == 200, patched
    assert credential_expiry.check(mailbox, today=TODAY) is True
    api("PATCH", f"/v1/mail-servers/{server_id}", key=tenant["key"],
        json_body={"oauth": {"client_secret_expires_at": "2026-12-08"}})
    assert credential_expiry.check(mailbox, today=TODAY) is True
    assert sorted(e.payload["expires_at"] for e in events.list_events(tenant["id"], "mailbox.credentials_expiring")) \
        == ["2026-12-05", "2026-12-08"]


def test_the_renewer_runs_the_check(api, tenant, aws, monkeypatch):
    mailbox, _ = oauth_world(api, tenant, date.today() + timedelta(days=3))
    monkeypatch.setattr(renewer.push, "maintain", lambda box, provider_factory: "n/a")
    assert renewer.run()["credentials_expiring"] == 1
    assert len(events.list_events(tenant["id"], "mailbox.credentials_expiring")) == 1
