"""Who is calling: the authenticated principal of the current request (one request at a time per Lambda)."""
from __future__ import annotations

import contextvars
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


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("mailbridge_principal", default=None)


def set_principal(principal: Principal | None) -> contextvars.Token:
    return _current.set(principal)


def reset_principal(token: contextvars.Token) -> None:
    _current.reset(token)


def current_principal() -> Principal:
    principal = _current.get()
    if principal is None:
        raise RuntimeError("no authenticated principal for this request")
    return principal
