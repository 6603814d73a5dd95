"""Shared by the Gmail tests: the fake Google on loopback (settings pointed at it), a gmail OAuth app (mail
server) and a connected gmail mailbox whose refresh token the fake issued."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.config import reset_settings
from chalicelib.credentials.store import CredentialStore
from chalicelib.ids import new_id
from chalicelib.models.mailbox import Mailbox, MailServer
from chalicelib.providers.kinds import provider_for
from chalicelib.push import gmail_push_key
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.timeutil import now_iso
from devservers.fake_google import FakeGoogle
from tests.sync_helpers import ensure_tenant

EMAIL = "ann@gmail.example"
TOPIC = "projects/mb-test/topics/gmail"
AUDIENCE = "https://mailbridge.example/v1/push/gmail"
SERVICE_ACCOUNT = "push@mb-test.iam.gserviceaccount.com"


def mail(n: int, tag: str = "", *, sender: str = "jan@acme.example") -> bytes:
    return (f"From: Jan <{sender}>\r\nTo: {EMAIL}\r\nSubject: gmail message {n}{tag}\r\n"
            f"Date: Mon, 23 Nov 2026 08:{n % 60:02d}:00 +0000\r\nMessage-ID: <gmail-{n}{tag}@acme.example>\r\n"
            f"\r\nBody {n}\r\n").encode()


def days_ago(days: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)


@pytest.fixture
def google():
    fake = FakeGoogle().start()
    old = {name: os.environ.get(name) for name in fake.environment()}
    os.environ.update(fake.environment())
    reset_settings()
    try:
        yield fake
    finally:
        fake.stop()
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings()


def make_gmail_server(google: FakeGoogle, tenant_id: str = "tnt_test", *, push: dict | None = None) -> MailServer:
    ensure_tenant(tenant_id)                      # its item holds the key the client secret is sealed with
    server_id = new_id("srv")
    now = now_iso()
    server = MailServer(tenant_id, server_id, name="Google", type="gmail", oauth={"client_id": google.client_id},
                        push=push if push is not None else {"topic": TOPIC, "audience": AUDIENCE,
                                                            "service_account": SERVICE_ACCOUNT},
                        secret_ciphertext=encrypt_secrets(tenant_id, server_id,
                                                          {"client_secret": google.client_secret}),
                        created_at=now, updated_at=now)
    server.save()
    return server


def make_gmail_mailbox(google: FakeGoogle, tenant_id: str = "tnt_test", *, email: str = EMAIL,
                       import_since: str | None = None, server: MailServer | None = None, **attrs) -> Mailbox:
    server = server or make_gmail_server(google, tenant_id)
    ensure_tenant(tenant_id)                      # the worker syncs only mailboxes of active tenants
    mailbox_id = new_id("mbx")
    now = now_iso()
    mailbox = Mailbox(tenant_id, mailbox_id, name="Gmail", type="gmail", email=email,
                      import_since=import_since or days_ago(7).date().isoformat(), status="active",
                      mail_server_id=server.server_id, kind="shared", created_at=now, updated_at=now,
                      secret_ciphertext=encrypt_secrets(tenant_id, mailbox_id,
                                                        {"refresh_token": google.issue_refresh_token(email)}),
                      secret_version=1, push_key=gmail_push_key(email), **attrs)
    mailbox.save()
    return mailbox


def gmail_provider(mailbox: Mailbox, sleeps: list | None = None):
    """The real provider through the kinds registry (as the worker builds it); sleeps are recorded."""
    provider = provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))
    provider.client.sleep = provider.client.pacer.sleep = (sleeps.append if sleeps is not None else lambda s: None)
    return provider
