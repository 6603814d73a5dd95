"""Request/response models for the CRM directory (records that messages pair with)."""

from typing import Literal

from pydantic import Field, field_validator

from chalicelib.api.schemas.common import ApiModel, Strict

RecordType = Literal["company", "contact", "lead", "project", "task", "ticket"]


class RecordIn(Strict):
    name: str | None = Field(None, max_length=500)
    emails: list[str] = Field(default_factory=list, max_length=100)
    domains: list[str] = Field(default_factory=list, max_length=50,
                               description="Company domains; a domain match never fires on free-mail domains.")
    number: str | None = Field(None, max_length=64, description="The number used in subject tags (#1234#, [T-1234]).")
    company_id: str | None = Field(None, max_length=200, description="Contacts only: the contact's company.")
    status: str | None = Field(None, max_length=50)
    readers: list[str] = Field(default_factory=list, max_length=1000,
                               description='User ids who may read the messages paired to it; "*" = everyone.')


class BatchRecord(RecordIn):
    type: RecordType
    id: str = Field(min_length=1, max_length=200)


MAX_BATCH_MATCH_KEYS = 10_000


class RecordBatch(Strict):
    """Each address and domain is one index write, so a batch is also capped at `MAX_BATCH_MATCH_KEYS`
    of them in total (one request stays a bounded amount of work)."""
    records: list[dict] = Field(min_length=1, max_length=1000,
                                description="Up to 1,000 records (and 10,000 emails + domains in total); "
                                            "each record is validated and stored on its own.")

    @field_validator("records")
    @classmethod
    def _bounded(cls, records: list[dict]) -> list[dict]:
        keys = sum(len(r[name]) for r in records if isinstance(r, dict)
                   for name in ("emails", "domains") if isinstance(r.get(name), list))
        if keys > MAX_BATCH_MATCH_KEYS:
            raise ValueError(f"{keys} emails and domains in one batch; at most {MAX_BATCH_MATCH_KEYS}: split it")
        return records


class RecordOut(ApiModel):
    type: str
    id: str
    name: str | None
    emails: list[str]
    domains: list[str]
    number: str | None
    company_id: str | None
    status: str | None
    readers: list[str]
    created_by: str | None
    created_at: str
    updated_at: str


class BatchItemResult(ApiModel):
    type: str | None
    id: str | None
    status: Literal["created", "updated", "error"]
    error: str | None = None


class BatchResult(ApiModel):
    results: list[BatchItemResult]
    pairing_queued: bool = Field(description="true when a record gained or lost addresses, domains or numbers: "
                                             "late pairing of the mail already imported runs in the background "
                                             "and is usually done within seconds (see the records' messages)")
