"""Request/response models for sending mail and the outbox (docs/api.md, "Sending mail")."""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from chalicelib.api.schemas.common import ApiModel, Strict
from chalicelib.api.schemas.mailboxes import check_email, check_header_text
from chalicelib.lazy import lazy_module
from chalicelib.outbox.limits import MAX_RECIPIENTS, MAX_SEND_BODY_BYTES
from chalicelib.sync.mime_address import strict_getaddresses

# Loaded by the first send's cross-field check (`SendRequest.problems`), not on the API's cold start (chalicelib.lazy).
compose = lazy_module("chalicelib.outbox.compose")

SendMode = Literal["new", "reply", "reply_all", "forward"]
OutboxStatus = Literal["queued", "scheduled", "sending", "sent", "failed", "cancelled"]
MAX_ATTACHMENTS = 20
MAX_TEXT_CHARS = 1_000_000
# Bodies are taken as written: `Strict` strips whitespace from strings, which would eat a body's indentation.
Body = Annotated[str, StringConstraints(strip_whitespace=False, max_length=MAX_TEXT_CHARS)]


class RecipientIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    name: str | None = Field(None, max_length=200)

    _email = field_validator("email")(check_email)
    _name = field_validator("name")(check_header_text)


def _recipient(value):
    """A recipient as {"email", "name"} or one RFC 5322 mailbox string ("Name <a@b.example>"), parsed
    strictly (`sync.mime_address`: one address, balanced comments, no smuggled second address)."""
    if isinstance(value, str):
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError("must not contain line breaks or NUL")
        pairs = strict_getaddresses(value)
        if not pairs or len(pairs) != 1 or not pairs[0][1]:
            raise ValueError("must be one email address like name@example.com or Name <name@example.com>")
        name, address = pairs[0]
        return {"email": address, "name": name or None}
    return value


# The OpenAPI document shows both accepted shapes (the string is parsed into the object before validation).
Recipient = Annotated[RecipientIn, BeforeValidator(_recipient, json_schema_input_type=RecipientIn | str)]


class AttachmentIn(Strict):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/"
                                                                  r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
    content_base64: str = Field(min_length=0, max_length=MAX_SEND_BODY_BYTES)

    _filename = field_validator("filename")(check_header_text)

    def data(self) -> bytes:
        return base64.b64decode(self.content_base64, validate=True)

    @field_validator("content_base64")
    @classmethod
    def _decodable(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 (RFC 4648 §4)") from None
        return value


class SendRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "mode": "new", "to": ["Jan Novák <jan@acme.example>"], "subject": "Offer #1234#", "text": "Hello Jan, ..."}]})

    mode: SendMode = "new"
    in_reply_to: str | None = Field(None, max_length=64, description="A stored message id (reply/forward).")
    to: list[Recipient] = Field(default_factory=list, description='{"email", "name"} or "Name <a@b.example>"')
    cc: list[Recipient] = Field(default_factory=list)
    bcc: list[Recipient] = Field(default_factory=list)
    subject: str | None = Field(None, max_length=998, description="Default for replies/forwards: the "
                                                                   "original's with Re:/Fwd: (not stacked).")
    text: Body | None = None
    html: Body | None = Field(None, description="Sanitized before sending.")
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    send_at: datetime | None = Field(None, description="ISO 8601 with offset; at most 30 days ahead.")

    _subject = field_validator("subject")(check_header_text)

    @field_validator("text", "html")
    @classmethod
    def _no_nul(cls, value):
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL")
        return value

    def problems(self) -> list[dict[str, str]]:
        """Rules across fields, as 422 field errors (a model validator could not name the field)."""
        found = []
        if self.mode != "new" and not self.in_reply_to:
            found.append(("in_reply_to", f"required for mode {self.mode}"))
        if self.mode == "new" and self.in_reply_to:
            found.append(("in_reply_to", "only for reply, reply_all and forward"))
        if self.mode in ("new", "forward") and not (self.to or self.cc or self.bcc):
            found.append(("to", "at least one recipient"))
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            found.append(("to", f"at most {MAX_RECIPIENTS} recipients (to + cc + bcc together)"))
        has_html = self.html is not None and not compose.html_is_blank(self.html)
        if self.mode != "forward" and not ((self.text and self.text.strip()) or has_html or self.attachments):
            found.append(("text", "nothing to send: give text, html (that shows something once sanitized) or "
                                  "an attachment"))
        if self.send_at is not None and self.send_at.tzinfo is None:
            found.append(("send_at", "needs a UTC offset, e.g. 2026-12-01T09:00:00Z"))
        return [{"field": field, "message": message} for field, message in found]


class OutboxError(ApiModel):
    code: str
    detail: str
    at: str


class OutboxOut(ApiModel):
    id: str
    mailbox_id: str
    status: OutboxStatus
    mode: SendMode
    in_reply_to: str | None
    subject: str | None
    recipients: int
    send_at: str | None
    attempts: int
    last_error: OutboxError | None
    rfc_message_id: str
    provider_message_id: str | None
    provider_thread_id: str | None
    message_id: str | None = Field(description="The stored sent copy (GET /v1/messages/{id}) once sent.")
    sent_at: str | None
    created_at: str
    updated_at: str
