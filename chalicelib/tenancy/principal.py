"""Who acts: a tenant (as itself or one of its CRM users) or the operator.

The services take a `Principal` to decide what the caller may see and change; the API layer
(`chalicelib.api.context`) authenticates requests into one and keeps the current request's. Defined here, below
both, so services never import the API layer."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """`tenant_id` is None only for the operator. `user_id` is the CRM user the tenant asserts via X-User-Id;
    None means the call acts as the tenant itself (its admin)."""
    tenant_id: str | None
    key_id: str | None = None
    user_id: str | None = None
    is_operator: bool = False

    @property
    def is_tenant_admin(self) -> bool:
        return self.tenant_id is not None and self.user_id is None
