"""Who is calling: the authenticated principal (`tenancy.principal.Principal`) of the current request (one request
at a time per Lambda)."""
from __future__ import annotations

import contextvars

from chalicelib.tenancy.principal import Principal

__all__ = ["Principal", "current_principal", "reset_principal", "set_principal"]

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
