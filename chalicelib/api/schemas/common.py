"""Shared request/response model pieces.

The schema modules (`api/schemas/*`) are not imported by `import app`: a route names its models by
`"module:Name"` reference and resolves them on its first request, the OpenAPI document resolves them all
(`chalicelib.api.routing`; docs/architecture.md, "Cold start"); a route module that builds a response model
reaches its schema module through a `chalicelib.lazy.lazy_module`. Nothing outside `api/` imports them.

They do not postpone their annotations (no `from __future__ import annotations`, PEP 563): pydantic reads a
model's fields when its class is created, also with `defer_build`, and a postponed annotation is a string it
compiles and evaluates first — ~39 M instructions for the ~120 models, when they were still created at import.
With the types written out, a model may name only models defined above it (or quote the name).
"""

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    """Base of every API model. `defer_build=True` builds a model's validator and serializer on its first use
    instead of when its class is defined (docs.pydantic.dev, `ConfigDict.defer_build`): a schema module declares
    up to ~20 models and a request uses one or two, so a route's first request does not pay for all of them.
    The first request that validates or renders a model — or `/openapi.json`, which walks all of them — builds
    it once per process."""
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
