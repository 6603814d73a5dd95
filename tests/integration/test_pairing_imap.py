"""Guards pairing of mail imported from a real Dovecot through the real sync worker: parsed addresses,
Message-IDs and automation headers as the store writes them must reach the matchers, the thread
inheritance and the auto-reply suppression (no leads from vacation replies)."""
from __future__ import annotations

import datetime as dt

from chalicelib.models.message import Message
from chalicelib.models.pairing import Rule
from chalicelib.pairing import context as pairing_context
from chalicelib.pairing import directory
from chalicelib.pairing.store import active_links
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import worker
from chalicelib.tenancy import service
from chalicelib.timeutil import now_iso
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, job_event, make_mailbox, reload

RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)


def imap_mailbox(dovecot, tenant_id: str, mode: str):
    user, password = dovecot.new_user()
    mailbox = make_mailbox(tenant_id, import_since="2026-11-20", pairing_mode=mode,
                           imap={"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user,
                                 "login_method": "plain"})
    mailbox.update(actions=[type(mailbox).secret_ciphertext.set(
        encrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, {"password": password}))])
    return reload(mailbox), user


def by_subject(mailbox) -> dict[str, Message]:
    return {m.subject: m for m in Message.by_mailbox.query(mailbox.mailbox_id)}


def linked(message) -> set[tuple[str, str]]:
    return {(link.entity_type, link.entity_id) for link in active_links(message.message_id)}


def test_mail_imported_from_dovecot_is_paired_by_the_worker(aws, dovecot):
    tenant = service.create_tenant("Pairing", "standard", own_domains=["example.com"])
    tenant_id = tenant.tenant_id
    directory.put_record(tenant_id, "company", "c-1", {"name": "Acme", "emails": ["info@acme.example"]})
    directory.put_record(tenant_id, "contact", "p-1", {"emails": ["jan@acme.example"], "company_id": "c-1"})
    directory.put_record(tenant_id, "project", "pr-7", {"number": "1234"})
    Rule(tenant_id, "rul_leads", name="leads", position=1, conditions={"direction": "inbound"},
         actions=[{"type": "create_lead"}], created_at=now_iso(), updated_at=now_iso()).save()
    pairing_context.invalidate()
    mailbox, user = imap_mailbox(dovecot, tenant_id, "auto")

    def append(folder, **kwargs):
        dovecot.append(user, folder, make_message(date=RECENT, **kwargs), date=RECENT)

    append("INBOX", subject="Offer #1234#", from_="Jan Novák <jan@acme.example>", to="me@example.com",
           message_id="<offer@acme.example>")
    append("INBOX", subject="Re: Offer", from_="Petr <petr@supplier.example>", to="me@example.com",
           in_reply_to="<offer@acme.example>", references=["<offer@acme.example>"])
    append("INBOX", subject="Out of office", from_="robot@unknown.example", to="me@example.com",
           extra_headers={"Auto-Submitted": "auto-replied"})
    append("INBOX", subject="Hello there", from_="Eva <eva@prospect.example>", to="me@example.com")
    append("INBOX", subject="Team lunch", from_="boss@example.com", to="me@example.com")
    append("Sent", subject="Our quote", from_="me@example.com", to="Info <info@acme.example>")

    result = worker.handle_batch(job_event((tenant_id, mailbox.mailbox_id)), FakeContext())
    assert result == {"batchItemFailures": []}
    messages = by_subject(mailbox)
    assert len(messages) == 6
    assert linked(messages["Offer #1234#"]) == {("company", "c-1"), ("contact", "p-1"), ("project", "pr-7")}
    assert ("project", "pr-7") in linked(messages["Re: Offer"])                 # inherited via In-Reply-To
    assert linked(messages["Out of office"]) == set()                         # no lead from an auto-reply
    assert [k for k, _ in linked(messages["Hello there"])] == ["lead"]         # unknown sender → lead
    assert linked(messages["Team lunch"]) == set()                            # internal mail
    assert linked(messages["Our quote"]) == {("company", "c-1")}               # outbound: recipients count
    assert Message.get(messages["Offer #1234#"].message_id).link_count == 3
