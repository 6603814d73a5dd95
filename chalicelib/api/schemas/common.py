"""Shared request/response model pieces."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    """Base of every API model. `defer_build=True` builds a model's validator and serializer on its first use
    instead of when its class is defined (docs.pydantic.dev, `ConfigDict.defer_build`): the API declares ~90
    models at import and a request uses one or two, so a cold start no longer pays for all of them. The first
    request that validates or renders a model — or `/openapi.json`, which walks all of them — builds it once
    per process."""
    model_config = ConfigDict(defer_build=True)


class Strict(ApiModel):
    """Request models reject unknown fields, so a typo is a 422 naming the field, not a silent no-op."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ListQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=4096)


class Health(ApiModel):
    status: str
    stage: str
