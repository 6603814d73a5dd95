"""Guards against stored XSS end to end: every vector of the OWASP-style list (tests/unit/test_sanitize.py) —
in the HTML body of received mail (shown by `GET /v1/messages/{id}`), as a mailbox signature (saved, then shown
by `GET /v1/mailboxes/{id}`), and in the HTML of mail sent from the CRM with that signature (checked on the
bytes the SMTP server received) — leaves no script, event handler, style, frame, form or unsafe URL."""
from __future__ import annotations

import pytest

from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from devservers.smtp import for_dovecot
from tests.mailfactory import make_message
from tests.outbox_helpers import mailbox_body, received, run_outbox_jobs
from tests.unit.test_sanitize import DANGEROUS, XSS_VECTORS


@pytest.fixture
def sales(api, tenant, dovecot, aws):
    """A live IMAP+SMTP mailbox of the tenant (real Dovecot, aiosmtpd) and the SMTP server's envelopes."""
    with for_dovecot(dovecot) as smtp:
        user, password = dovecot.new_user("xss")
        created = api("POST", "/v1/mailboxes", key=tenant["key"],
                      json_body=mailbox_body(dovecot, smtp.port, user, password))
        assert created.status == 201, created
        yield {"id": created.json["id"], "smtp": smtp, "key": tenant["key"], "tenant_id": tenant["id"], "aws": aws}


def test_received_html_is_shown_without_any_vector(api, sales):
    mailbox = Mailbox.get(sales["tenant_id"], sales["id"])
    survived = []
    for n, vector in enumerate(XSS_VECTORS):
        raw = make_message(subject=f"xss {n}", html=f"<p>before</p>{vector}<p>after</p>", body="plain part")
        message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", f"x{n}"), raw)).message
        detail = api("GET", f"/v1/messages/{message.message_id}", key=sales["key"])
        assert detail.status == 200, detail
        html = detail.json["html"] or ""
        if DANGEROUS.search(html) or "before" not in html:   # (an unclosed <style> may swallow the rest)
            survived.append((vector, html))
    assert survived == []


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_a_signature_is_saved_without_the_vector(api, sales, vector):
    saved = api("PATCH", f"/v1/mailboxes/{sales['id']}", key=sales["key"],
                json_body={"signature_html": f"<p>Jana</p>{vector}"})
    assert saved.status == 200, saved
    shown = api("GET", f"/v1/mailboxes/{sales['id']}", key=sales["key"]).json["signature_html"] or ""
    assert not DANGEROUS.search(shown) and "Jana" in shown


def test_sent_html_and_signature_reach_the_server_without_any_vector(api, sales):
    every = "".join(f"<p>v{n}</p>{vector}" for n, vector in enumerate(XSS_VECTORS))
    api("PATCH", f"/v1/mailboxes/{sales['id']}", key=sales["key"], json_body={"signature_html": f"<p>Jana</p>{every}"})
    accepted = api("POST", f"/v1/mailboxes/{sales['id']}/send", key=sales["key"], json_body={
        "to": ["jan@customer.example"], "subject": "Offer", "html": f"<p>Hello</p>{every}<p>Bye</p>"})
    assert accepted.status == 202, accepted
    assert run_outbox_jobs(sales["aws"]["events_queue_url"]) == ["sent"]
    [mail] = received(sales["smtp"])
    html = mail.get_body(("html",)).get_content()
    assert "Hello" in html                    # (an unclosed <style> in the list may swallow what follows it)
    assert not DANGEROUS.search(html), DANGEROUS.search(html)
