"""Build the MIME of a new message, reply or forward (RFC 5322, RFC 2045-2049) with `email.message.EmailMessage`.

- Policy: `email.policy.SMTP` (CRLF line ends) with `cte_type="7bit"`, so non-ASCII bodies are quoted-printable
  or base64 and the message needs no 8BITMIME; header values are RFC 2047 encoded words — except Message-ID,
  In-Reply-To and References, folded only between ids at up to 998 characters (`_SendPolicy`). The email package
  itself refuses CR/LF in a header value; the API refuses them earlier with a field name
  (`api/schemas/outbox.py`), and reply recipients taken from the original are filtered (`_deliverable`).
- `Message-ID` is fresh (`email.utils.make_msgid` with the sender's domain, RFC 5322 §3.6.4); `Date` is now.
- Replies: `In-Reply-To` = the original's Message-ID; `References` = the original's References (or its
  In-Reply-To) followed by its Message-ID (RFC 5322 §3.6.4), trimmed to the first and the last 19 ids when
  longer. Subject "Re: " / forwards "Fwd: " — not added again when the subject already starts with a reply
  or forward prefix (RFC 5322 §3.6.5 "Re: "; common "Fwd:"/"Fw:"/"AW:"/"WG:" variants).
- Bcc recipients are envelope recipients only; no Bcc header is written.
- The signature follows the new text (before the quoted original), in the text part after the "-- " line of
  RFC 3676 §4.3; in HTML inside `<div class="signature">`.
- A reply quotes the original ("On <date>, <sender> wrote:" + "> " lines; HTML in `<blockquote
  type="cite">`); a forward shows the original's headers and body and carries its attachments.
"""
from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from chalicelib.outbox.html_text import html_to_text
from chalicelib.providers.base import ThreadHint
from chalicelib.security.addresses import header_safe_name, header_safe_text, is_plain_address, with_ascii_domain
from chalicelib.security.sanitize import sanitize_html

ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
MAX_LINE = 998                          # RFC 5322 §2.1.1: a line MUST be at most 998 characters (+CRLF)


class _SendPolicy(policy.EmailPolicy):
    """`email.policy.SMTP` folding, except for the msg-id headers: the email package folds a token longer than
    `max_line_length` (78) into RFC 2047 encoded-words, which RFC 2047 §5 forbids in a msg-id — Outlook's
    Message-IDs alone run ~80 characters, and such an In-Reply-To/References threads nowhere. Those headers
    are folded at 998 instead (only between ids, as RFC 5322 §3.6.4 allows)."""

    def _for(self, name: str) -> "policy.EmailPolicy":
        if name.lower() in ID_HEADERS and self.max_line_length != MAX_LINE:
            return self.clone(max_line_length=MAX_LINE)
        return self

    def fold(self, name, value):
        return policy.EmailPolicy.fold(self._for(name), name, value)

    def fold_binary(self, name, value):
        return policy.EmailPolicy.fold_binary(self._for(name), name, value)


POLICY = _SendPolicy(linesep="\r\n", cte_type="7bit")
MAX_REFERENCES = 20
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr|enc)\s*(\[\d+\])?\s*:", re.IGNORECASE)
REPLY_MODES = ("reply", "reply_all")


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str | None = None

    def header(self) -> Address:
        local, _, domain = self.email.rpartition("@")
        return Address(display_name=self.name or "", username=local, domain=domain)

    def display(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Draft:
    mode: str
    to: tuple[Recipient, ...] = ()
    cc: tuple[Recipient, ...] = ()
    bcc: tuple[Recipient, ...] = ()
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Original:
    """What a reply or forward needs of the stored original."""
    rfc_message_id: str | None
    references: tuple[str, ...]
    in_reply_to: str | None
    subject: str | None
    sender: Recipient | None
    reply_to: tuple[Recipient, ...]
    to: tuple[Recipient, ...]
    cc: tuple[Recipient, ...]
    date: str | None
    text: str | None
    html: str | None                       # sanitized
    provider_thread_id: str | None = None
    provider_message_id: str | None = None
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Sender:
    email: str
    name: str | None
    signature_html: str | None             # sanitized on save
    signature_on_replies: bool


@dataclass(frozen=True)
class Composed:
    raw: bytes
    rfc_message_id: str                    # without <>
    sender: str
    recipients: tuple[str, ...]            # envelope: to + cc + bcc, deduplicated
    to: tuple[Recipient, ...]
    cc: tuple[Recipient, ...]
    subject: str
    thread: ThreadHint


def prefixed_subject(mode: str, subject: str | None) -> str:
    """The reply/forward subject from the original's (stored mail: anything a header must not carry becomes a
    space, `security.addresses.header_safe_text`)."""
    subject = header_safe_text(subject or "").strip()
    if mode in REPLY_MODES:
        return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}".rstrip()
    if mode == "forward":
        return subject if _FORWARD_PREFIX.match(subject) else f"Fwd: {subject}".rstrip()
    return subject


def _deliverable(recipients) -> tuple[Recipient, ...]:
    """Addresses taken from a stored message are whatever an inbound message said: only plain addr-specs are
    kept and display names lose control characters (`security.addresses`), so nothing reaches a header or
    the SMTP envelope that the API would refuse as input (an international domain is kept, as A-labels)."""
    kept = (Recipient(with_ascii_domain(r.email), header_safe_name(r.name)) for r in recipients)
    return tuple(r for r in kept if is_plain_address(r.email))


def reply_recipients(mode: str, original: Original, own_email: str) -> tuple[tuple[Recipient, ...],
                                                                            tuple[Recipient, ...]]:
    """(to, cc) of a reply: Reply-To, else From (RFC 5322 §3.6.3); reply_all adds the original's To and Cc,
    without the mailbox's own address and without duplicates. A reply to one's own sent message goes to its
    To recipients. Addresses that are not plain addr-specs are left out (`_deliverable`)."""
    own = own_email.lower()
    primary = _deliverable(original.reply_to or ((original.sender,) if original.sender else ()))
    if all(r.email.lower() == own for r in primary):
        primary = _deliverable(original.to)
    to = _unique(primary, exclude={own})
    cc: tuple[Recipient, ...] = ()
    if mode == "reply_all":
        seen = {r.email.lower() for r in to} | {own}
        to = to + _unique(_deliverable(original.to), exclude=seen)
        seen |= {r.email.lower() for r in to}
        cc = _unique(_deliverable(original.cc), exclude=seen)
    return to, cc


def _unique(recipients, exclude: set[str]) -> tuple[Recipient, ...]:
    seen, out = set(exclude), []
    for recipient in recipients:
        key = recipient.email.lower()
        if key not in seen:
            seen.add(key)
            out.append(recipient)
    return tuple(out)


def _references(original: Original) -> tuple[str, ...]:
    chain = list(original.references) or ([original.in_reply_to] if original.in_reply_to else [])
    if original.rfc_message_id:
        chain.append(original.rfc_message_id)
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return tuple(chain)


def _attribution(original: Original) -> str:
    who = original.sender.display() if original.sender else "someone"
    return f"On {original.date or 'an earlier date'}, {who} wrote:"


def _forward_header_lines(original: Original) -> list[str]:
    lines = ["---------- Forwarded message ----------"]
    if original.sender:
        lines.append(f"From: {original.sender.display()}")
    if original.date:
        lines.append(f"Date: {original.date}")
    lines.append(f"Subject: {original.subject or ''}")
    if original.to:
        lines.append("To: " + ", ".join(r.display() for r in original.to))
    if original.cc:
        lines.append("Cc: " + ", ".join(r.display() for r in original.cc))
    return lines


def _original_text(original: Original) -> str:
    return original.text if original.text is not None else html_to_text(original.html)


def _text_body(draft: Draft, signature_text: str | None, original: Original | None) -> str:
    text = draft.text if draft.text is not None else html_to_text(draft.html)
    parts = [text.rstrip("\n")]
    if signature_text:
        parts.append("-- \n" + signature_text)
    if original is not None and draft.mode in REPLY_MODES:
        quoted = "\n".join("> " + line if line else ">" for line in _original_text(original).splitlines())
        parts.append(_attribution(original) + "\n" + quoted)
    elif original is not None and draft.mode == "forward":
        parts.append("\n".join(_forward_header_lines(original)) + "\n\n" + _original_text(original))
    return "\n\n".join(p for p in parts if p) + "\n"


def _html_body(draft: Draft, signature_html: str | None, original: Original | None) -> str:
    if draft.html is not None:
        body = sanitize_html(draft.html)
    else:
        body = "<div>" + html_lib.escape(draft.text or "").replace("\n", "<br>\n") + "</div>"
    parts = [body]
    if signature_html:
        parts.append(f'<div class="signature">-- <br>\n{signature_html}</div>')
    if original is not None:
        original_html = original.html or ("<div>" + html_lib.escape(original.text or "").replace("\n", "<br>\n")
                                          + "</div>")
        if draft.mode in REPLY_MODES:
            parts.append(f"<div>{html_lib.escape(_attribution(original))}</div>"
                         f'<blockquote type="cite">{original_html}</blockquote>')
        elif draft.mode == "forward":
            head = "<br>\n".join(html_lib.escape(line) for line in _forward_header_lines(original))
            parts.append(f"<div>{head}</div><br>\n{original_html}")
    return "\n".join(parts)


def html_is_blank(html: str) -> bool:
    """True when `html`, sanitized as it would be sent, shows a reader nothing: no text and no image."""
    sanitized = sanitize_html(html)
    return not html_to_text(sanitized).strip() and "<img" not in sanitized


def _wants_signature(draft: Draft, sender: Sender) -> bool:
    return bool(sender.signature_html) and (draft.mode == "new" or sender.signature_on_replies)


def compose(sender: Sender, draft: Draft, original: Original | None, *, now: datetime | None = None) -> Composed:
    """The MIME bytes and envelope of `draft` (recipients already validated; see the module docstring)."""
    to, cc = draft.to, draft.cc
    if original is not None and draft.mode in REPLY_MODES:
        derived_to, derived_cc = reply_recipients(draft.mode, original, sender.email)
        to = _unique(derived_to + draft.to, exclude=set())
        cc = _unique(derived_cc + draft.cc, exclude={r.email.lower() for r in to})
    subject = draft.subject if draft.subject is not None else prefixed_subject(
        draft.mode, original.subject if original is not None else "")
    domain = sender.email.rpartition("@")[2]
    message_id = make_msgid(domain=domain)

    msg = EmailMessage(policy=POLICY)
    msg["From"] = Recipient(sender.email, sender.name).header()
    if to:
        msg["To"] = [r.header() for r in to]
    if cc:
        msg["Cc"] = [r.header() for r in cc]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id
    thread = ThreadHint(mode=draft.mode)
    if original is not None and draft.mode in REPLY_MODES and original.rfc_message_id:
        references = _references(original)
        msg["In-Reply-To"] = f"<{original.rfc_message_id}>"
        msg["References"] = " ".join(f"<{ref}>" for ref in references)
        thread = ThreadHint(mode=draft.mode, in_reply_to=original.rfc_message_id, references=references,
                            provider_thread_id=original.provider_thread_id,
                            provider_message_id=original.provider_message_id)
    elif original is not None:
        thread = ThreadHint(mode=draft.mode, provider_message_id=original.provider_message_id)

    signature_html = sender.signature_html if _wants_signature(draft, sender) else None
    signature_text = html_to_text(signature_html) if signature_html else None
    msg.set_content(_text_body(draft, signature_text, original))
    if draft.html is not None or (original is not None and original.html):
        msg.add_alternative(_html_body(draft, signature_html, original), subtype="html")
    forwarded = original.attachments if original is not None and draft.mode == "forward" else ()
    for attachment in tuple(forwarded) + tuple(draft.attachments):
        maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
        msg.add_attachment(attachment.data, maintype=maintype or "application",
                           subtype=subtype or "octet-stream", filename=header_safe_text(attachment.filename))
    envelope = tuple(dict.fromkeys(r.email for r in to + cc + draft.bcc))
    return Composed(raw=msg.as_bytes(policy=POLICY), rfc_message_id=message_id.strip("<>"), sender=sender.email,
                    recipients=envelope, to=to, cc=cc, subject=subject, thread=thread)
