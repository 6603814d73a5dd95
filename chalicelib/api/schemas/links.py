"""Request/response models for manual pairing, records created from messages, and the pairing audit."""

from pydantic import Field

from chalicelib.api.schemas.common import ApiModel, ListQuery, Strict
from chalicelib.api.schemas.directory import RecordOut, RecordType


class LinkIn(Strict):
    type: RecordType
    id: str = Field(min_length=1, max_length=200)


class LinkOut(ApiModel):
    type: str
    id: str
    source: str
    reason: str | None


class CreateRecordIn(Strict):
    type: RecordType = Field(description="company, contact, lead, project, task or ticket. Leads and contacts "
                                         "are keyed on the counterpart: the sender of inbound mail, the first "
                                         "recipient of sent mail.")
    name: str | None = Field(None, max_length=500, description="Defaults to the counterpart's name or the subject.")
    readers: list[str] = Field(default_factory=list, max_length=1000)
    company_id: str | None = Field(None, min_length=1, max_length=200,
                                   description="Contacts only: their company; defaults to the one company the "
                                               "counterpart matches (422 naming company_id when none or several).")


class CreatedRecordOut(ApiModel):
    record: RecordOut
    created: bool
    link: LinkOut


class AuditOut(ApiModel):
    id: str
    action: str
    actor: str
    reason: str | None
    message_id: str | None
    entity_type: str | None
    entity_id: str | None
    signal_id: str | None
    undo_of: str | None
    undone_by: str | None
    details: dict
    created_at: str


class AuditList(ApiModel):
    items: list[AuditOut]
    next_cursor: str | None


class AuditQuery(ListQuery):
    message_id: str | None = Field(None, max_length=200)
