"""Request/response models for privacy controls, purge and erasure (docs/api.md, "Privacy controls")."""

from typing import Annotated

from pydantic import Field, StringConstraints

from chalicelib.api.schemas.common import ApiModel, Strict

Entries = list[Annotated[str, StringConstraints(min_length=2, max_length=320)]]   # RFC 5321 §4.5.3.1 sizes


class PrivacyListsIn(Strict):
    """Addresses (`jan@acme.example`) and whole domains (`@acme.example`, subdomains included)."""
    never_import: Entries = Field(default_factory=list, max_length=1000,
                                  examples=[["newsletter@vendor.example", "@spam.example"]])
    never_pair: Entries = Field(default_factory=list, max_length=1000, examples=[["@gmail.com"]])


class PrivacyListsOut(ApiModel):
    scope: str
    never_import: Entries
    never_pair: Entries
    updated_at: str | None


class PrivacyMarkIn(Strict):
    private: bool


class PrivacyMarkOut(ApiModel):
    id: str
    private: bool
    changed: bool


class PrivacySettingsIn(Strict):
    retention_days: int | None = Field(None, ge=1, le=3650, examples=[365],
                                       description="Stored mail older than this is deleted; null = kept. One of "
                                                   "30, 90, 180, 365, 730, 1095, 1825, 2555, 3650 "
                                                   "(`privacy.lists.RETENTION_PERIODS`).")


class PrivacySettingsOut(ApiModel):
    retention_days: int | None


class DeleteMailboxQuery(Strict):
    purge: bool = Field(False, description="true: also delete everything stored for the mailbox.")


class PurgeOut(ApiModel):
    status: str = Field(description="purged | purging (continues in the background)")
    counts: dict[str, int] = Field(default_factory=dict)
    push_stop: str | None = Field(None, description="none | stopped | failed: <code> (not fatal)")
    phase: str | None = None


class ErasureIn(Strict):
    email: str = Field(min_length=3, max_length=320)


class ErasureOut(ApiModel):
    id: str
    status: str
    subject_hash: str
    counts: dict[str, int]
    message_ids: list[str]
    audit_id: str | None
    created_at: str
    finished_at: str | None
