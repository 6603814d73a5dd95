"""Guards the MIME the outbox builds: stacked "Re: Re:" subjects, lost threading headers, Bcc leaking into the
headers, forwards without the original's attachments, signatures rendered as raw HTML in text mail, and the
attachment limit answering anything but 413."""
from __future__ import annotations

import base64
from email import message_from_bytes, policy

import pytest

from chalicelib.api.schemas.outbox import SendRequest
from chalicelib.outbox import compose, service
from chalicelib.outbox.html_text import html_to_text
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.security.sanitize import sanitize_html
from chalicelib.sync import store
from tests.mailfactory import make_message
from tests.sync_helpers import make_mailbox

SENDER = compose.Sender("me@acme.example", "Me", None, False)


def original(**overrides) -> compose.Original:
    values = dict(rfc_message_id="m3@x.example", references=("m1@x.example", "m2@x.example"), in_reply_to=None,
                  subject="Offer", sender=compose.Recipient("jan@x.example", "Jan"), reply_to=(),
                  to=(compose.Recipient("me@acme.example"), compose.Recipient("eva@x.example")),
                  cc=(compose.Recipient("petr@x.example"),), date="2026-11-30T10:00:00Z", text="Hi\nthere",
                  html=None)
    return compose.Original(**{**values, **overrides})


@pytest.mark.parametrize("mode,subject,expected", [
    ("reply", "Offer", "Re: Offer"), ("reply", "Re: Offer", "Re: Offer"), ("reply", "RE: Offer", "RE: Offer"),
    ("reply", "AW: Angebot", "AW: Angebot"), ("reply_all", "Re[2]: Offer", "Re[2]: Offer"),
    ("forward", "Offer", "Fwd: Offer"), ("forward", "Fwd: Offer", "Fwd: Offer"), ("forward", "FW: Offer", "FW: Offer"),
    ("forward", "Re: Offer", "Fwd: Re: Offer"), ("reply", "", "Re:"),
])
def test_prefixes_do_not_stack(mode, subject, expected):
    assert compose.prefixed_subject(mode, subject) == expected


def test_reply_all_threads_and_keeps_bcc_out_of_the_headers():
    composed = compose.compose(SENDER, compose.Draft("reply_all", bcc=(compose.Recipient("boss@acme.example"),),
                                                     text="OK"), original())
    mail = message_from_bytes(composed.raw, policy=policy.default)
    assert mail["In-Reply-To"] == "<m3@x.example>"
    assert mail["References"] == "<m1@x.example> <m2@x.example> <m3@x.example>"
    assert mail["To"] == "Jan <jan@x.example>, eva@x.example" and mail["Cc"] == "petr@x.example"
    assert mail["Bcc"] is None and b"boss@acme.example" not in composed.raw
    assert composed.recipients == ("jan@x.example", "eva@x.example", "petr@x.example", "boss@acme.example")
    assert mail["Message-ID"].endswith("@acme.example>") and mail["Date"]
    assert composed.thread.in_reply_to == "m3@x.example"


def test_reply_all_leaves_out_hostile_addresses_of_the_original():
    """Guards against an inbound message's addresses reaching the reply's headers and SMTP envelope unchecked:
    a control character, a non-ASCII local part (sent as an encoded word) or a name with a vertical tab."""
    hostile = original(sender=compose.Recipient("jan\x01@x.example", "Jan"), reply_to=(),
                       to=(compose.Recipient("eva@x.example", "Eva\x0bSmith"), compose.Recipient("jiří@x.example")),
                       cc=(compose.Recipient("a..b@x.example"), compose.Recipient("petr@x.example")))
    composed = compose.compose(SENDER, compose.Draft("reply_all", text="OK"), hostile)
    head = composed.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(byte < 32 and byte not in (9, 10, 13) for byte in head)
    assert composed.recipients == ("eva@x.example", "petr@x.example")
    mail = message_from_bytes(composed.raw, policy=policy.default)
    assert mail["To"] == "Eva Smith <eva@x.example>" and mail["Cc"] == "petr@x.example"
    only_hostile = original(sender=compose.Recipient("jan\x01@x.example"), reply_to=(), to=(), cc=())
    assert compose.compose(SENDER, compose.Draft("reply", text="OK"), only_hostile).recipients == ()


def test_a_reply_to_an_international_domain_goes_to_its_a_labels():
    """Guards against dropping a sender whose domain is written in U-labels (RFC 5891): the 7-bit reply
    addresses it as A-labels."""
    composed = compose.compose(SENDER, compose.Draft("reply", text="OK"),
                               original(sender=compose.Recipient("jan@münchen.example", "Jan"), reply_to=()))
    assert composed.recipients == ("jan@xn--mnchen-3ya.example",)
    assert message_from_bytes(composed.raw, policy=policy.default)["To"] == "Jan <jan@xn--mnchen-3ya.example>"


def test_long_reference_chains_keep_the_first_and_the_latest():
    chain = tuple(f"r{i}@x.example" for i in range(40))
    composed = compose.compose(SENDER, compose.Draft("reply", text="x"), original(references=chain))
    refs = message_from_bytes(composed.raw, policy=policy.default)["References"].split()
    assert len(refs) == compose.MAX_REFERENCES and refs[0] == "<r0@x.example>" and refs[-1] == "<m3@x.example>"


def test_forward_carries_the_original_attachments_and_headers():
    source = original(attachments=(compose.Attachment("offer.pdf", "application/pdf", b"%PDF-1.4 offer"),))
    composed = compose.compose(SENDER, compose.Draft("forward", to=(compose.Recipient("eva@acme.example"),),
                                                     text="FYI"), source)
    mail = message_from_bytes(composed.raw, policy=policy.default)
    [part] = list(mail.iter_attachments())
    assert part.get_filename() == "offer.pdf" and part.get_content() == b"%PDF-1.4 offer"
    text = mail.get_body(("plain",)).get_content()
    assert "---------- Forwarded message ----------" in text and "From: Jan <jan@x.example>" in text
    assert mail["Subject"] == "Fwd: Offer" and mail["In-Reply-To"] is None


def test_non_ascii_is_encoded_for_7bit_transport():
    composed = compose.compose(compose.Sender("me@acme.example", "Jana Nováková", None, False),
                               compose.Draft("new", to=(compose.Recipient("j@x.example", "Jiří"),),
                                             subject="Nabídka č. 7", text="Dobrý den ✓"), None)
    assert all(byte < 128 for byte in composed.raw)
    mail = message_from_bytes(composed.raw, policy=policy.default)
    assert mail["Subject"] == "Nabídka č. 7" and str(mail["To"]) == "Jiří <j@x.example>"
    assert mail.get_body(("plain",)).get_content().startswith("Dobrý den ✓")


def test_signature_text_rendering_keeps_links_images_and_structure():
    html = sanitize_html('<div>Jana &amp; <b>team</b></div><p><a href="https://acme.example/x">our site</a> | '
                         '<a href="mailto:j@acme.example">j@acme.example</a></p><ol><li>one</li><li>two</li></ol>'
                         '<img src="https://acme.example/l.png" alt="Logo"><pre>  kept   spaces</pre>')
    assert html_to_text(html) == ("Jana & team\n\nour site <https://acme.example/x> | j@acme.example\n\n"
                                  "1. one\n2. two\n[Logo]\n\n  kept   spaces")


def test_bodies_are_kept_as_written_and_blank_ones_are_nothing_to_send():
    """Guards a body losing its first line's indentation to the API's whitespace stripping, and a message whose
    only content is blank text or HTML that sanitizes to nothing being accepted as not empty."""
    assert SendRequest(to=["a@x.example"], text="    code\n").text == "    code\n"
    for body in ({"text": " \n\t"}, {"html": "<script>alert(1)</script><p> </p>"}, {"text": " ", "html": "<br>"}):
        assert [p["field"] for p in SendRequest(to=["a@x.example"], **body).problems()] == ["text"], body
    for body in ({"html": '<img src="https://acme.example/chart.png">'}, {"html": "<p>Hi</p>"}, {"text": "."}):
        assert SendRequest(to=["a@x.example"], **body).problems() == [], body


def test_attachments_over_the_limit_answer_413(api, tenant, aws):
    mailbox = make_mailbox(tenant["id"])
    big = base64.b64encode(b"x" * (service.MAX_ATTACHMENT_BYTES + 1)).decode()
    result = api("POST", f"/v1/mailboxes/{mailbox.mailbox_id}/send", key=tenant["key"], json_body={
        "to": ["jan@x.example"], "text": "x", "attachments": [{"filename": "big.bin", "content_base64": big}]})
    assert result.status == 413 and result.json["errors"][0]["field"] == "attachments"


def test_reply_to_a_message_of_another_mailbox_is_refused(api, tenant, aws):
    mailbox, other = make_mailbox(tenant["id"]), make_mailbox(tenant["id"])
    message = store.save_fetched(other, FetchedMessage(MessageRef("inbox", "1"), make_message())).message
    body = SendRequest(mode="reply", in_reply_to=message.message_id, text="x")
    with pytest.raises(service.InvalidField):
        service.accept(mailbox, None, body, message, None)
    result = api("POST", f"/v1/mailboxes/{mailbox.mailbox_id}/send", key=tenant["key"],
                 json_body={"mode": "reply", "in_reply_to": "msg_doesnotexist", "text": "x"})
    assert result.status == 422 and result.json["errors"] == [{"field": "in_reply_to",
                                                               "message": "no message with this id"}]
