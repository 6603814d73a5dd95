"""Builds realistic RFC 5322 messages (bytes, CRLF line endings) for tests and benchmarks.

Non-ASCII display names and subjects are RFC 2047 encoded by `email.policy.SMTP`; attachments are base64
MIME parts (RFC 2045/2183); an HTML body makes a multipart/alternative (RFC 2046 §5.1.4).
"""
from __future__ import annotations

import datetime as dt
import itertools
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

_SEQ = itertools.count(1)


def make_message(*, subject: str = "Test message", from_: str = "Jan Novák <jan@acme.example>",
                 to: str | list[str] = "alice@example.com", cc: str | list[str] | None = None,
                 date: dt.datetime | None = None, body: str = "Hello,\nthis is a test.\n",
                 html: str | None = None, attachments: list[tuple[str, str, bytes]] | None = None,
                 message_id: str | None = None, in_reply_to: str | None = None,
                 references: list[str] | None = None, extra_headers: dict[str, str] | None = None) -> bytes:
    """A complete message as bytes.

    `attachments`: (filename, mime type "type/subtype", data). `message_id` defaults to a unique id
    (pass "" to omit the header). `date` defaults to now (UTC); naive datetimes are taken as UTC."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    if cc:
        msg["Cc"] = cc if isinstance(cc, str) else ", ".join(cc)
    msg["Subject"] = subject
    when = date or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    msg["Date"] = format_datetime(when)
    if message_id is None:
        message_id = make_msgid(idstring=f"t{next(_SEQ)}", domain="mailbridge.test")
    if message_id:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, mime, data in attachments or ():
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return msg.as_bytes()


# Byte strings that break MIME parsers when spliced into real mail (line ends, NUL, encoded-word and boundary
# fragments, charsets Python cannot decode, nesting openers, quoted-printable soft breaks): the fuzz test
# (tests/unit/test_mime_fuzz.py) and the long-run benchmark (bench/malformed_mail) mutate mail with them.
HOSTILE_TOKENS = [b"\r\n", b"\n", b"\x00", b"=?", b"?=", b"=?undefined?q?", b"=?utf-8?b?", b"--", b"boundary=",
                  b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n", b"Content-Type: message/rfc822\r\n\r\n",
                  b"charset=punycode", b"charset=idna", b"<blockquote>", b"<div>", b"(", b")", b"<", b">", b"\"",
                  b"\xff", b"\xc3", b"=\n", b"=\r\n", b"Content-Transfer-Encoding: base64\r\n", b"From: ", b",", b";"]
