"""Request/response models for scanner rules and per-tenant pairing settings."""

from typing import Literal

from pydantic import ConfigDict, Field

from chalicelib.api.schemas.common import ApiModel, Strict
from chalicelib.api.schemas.directory import RecordType

ActionType = Literal["pair", "create_lead", "create_ticket", "reopen_ticket", "bind", "skip", "stop"]


class RuleConditions(Strict):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True,
                              json_schema_extra={"examples": [{"from": ["newsletter.example"], "auto_reply": True}]})

    folder: Literal["inbox", "sent"] | None = None
    direction: Literal["inbound", "outbound"] | None = None
    from_: list[str] | None = Field(None, alias="from", max_length=100, description="Addresses or domains.")
    to: list[str] | None = Field(None, max_length=100, description="Addresses or domains (To and Cc).")
    subject_contains: str | None = Field(None, min_length=1, max_length=200,
                                         description="Case-insensitive (Unicode case folding: STRASSE finds "
                                                     "Straße).")
    subject_regex: str | None = Field(None, min_length=1, max_length=200,
                                      description="Python regex, case-insensitive as subject_contains; no "
                                                  "backreferences or nested quantifiers.")
    has_attachment: bool | None = None
    auto_reply: bool | None = Field(None, description="RFC 3834 auto-reply or bulk mail.")


class RecordRef(Strict):
    type: RecordType
    id: str = Field(min_length=1, max_length=200)


class RuleAction(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "pair",
                                                               "record": {"type": "company", "id": "c-1"}}]})

    type: ActionType
    record: RecordRef | None = Field(None, description="pair: the record to pair with.")
    types: list[RecordType] | None = Field(None, description="bind: record types to bind (default company, "
                                                              "contact, lead).")


class CreateRule(Strict):
    name: str = Field(min_length=1, max_length=200)
    mailbox_id: str | None = Field(None, min_length=1, max_length=200,
                                   description="Only this mailbox; omitted = every mailbox.")
    position: int = Field(100, ge=0, le=1_000_000, description="Rules run in ascending position.")
    enabled: bool = True
    conditions: RuleConditions = Field(default_factory=RuleConditions)
    actions: list[RuleAction] = Field(min_length=1, max_length=20)


class UpdateRule(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    name: str | None = Field(None, min_length=1, max_length=200)
    position: int | None = Field(None, ge=0, le=1_000_000)
    enabled: bool | None = None
    conditions: RuleConditions | None = None
    actions: list[RuleAction] | None = Field(None, min_length=1, max_length=20)


class RuleOut(ApiModel):
    id: str
    name: str
    mailbox_id: str | None
    position: int
    enabled: bool
    conditions: dict
    actions: list[dict]
    created_at: str
    updated_at: str


class RuleList(ApiModel):
    items: list[RuleOut]
    next_cursor: str | None = None


class RuleListQuery(Strict):
    mailbox_id: str | None = Field(None, max_length=200)


class Blocklist(Strict):
    addresses: list[str] = Field(default_factory=list, max_length=1000)
    domains: list[str] = Field(default_factory=list, max_length=1000)


class PairingSettingsIn(Strict):
    blocklist: Blocklist = Field(default_factory=Blocklist)
    ticket_tag_prefix: str = Field("T-", min_length=1, max_length=20, pattern=r"^[A-Za-z0-9#_-]+$")
    ticket_tag_in_body: bool = False
    strip_plus_tags: bool = False
    domain_match: bool = True
    free_mail_domains: list[str] = Field(default_factory=list, max_length=1000)
    thread_inheritance: bool = True
    late_pairing_days: int = Field(30, ge=1, le=365)


class PairingSettingsOut(ApiModel):
    blocklist: dict
    ticket_tag_prefix: str
    ticket_tag_in_body: bool
    strip_plus_tags: bool
    domain_match: bool
    free_mail_domains: list[str]
    thread_inheritance: bool
    late_pairing_days: int
