"""Shared request/response model pieces."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Request models reject unknown fields, so a typo is a 422 naming the field, not a silent no-op."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ListQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=4096)


class Health(BaseModel):
    status: str
    stage: str
