"""Request/response models for tenants (operator API) and API keys."""

import ipaddress
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from chalicelib.api.schemas.common import ApiModel, Strict
from chalicelib.api.schemas.mailboxes import ReturnUrl, check_return_url
from chalicelib.tenancy.plans import PLANS

PlanName = Literal[tuple(PLANS)]  # type: ignore[valid-type]


class TenantSettings(Strict):
    import_window_days: int | None = Field(None, ge=1, le=3650)
    oauth_return_url: ReturnUrl | None = Field(None, description="Where the browser goes after a Gmail/Microsoft "
                                                                 "consent when the call names no `return_url` "
                                                                 "(`?mailbox_id=&outcome=` is added).")

    _return = field_validator("oauth_return_url")(check_return_url)


class CreateTenant(Strict):
    name: str = Field(min_length=1, max_length=200)
    plan: PlanName = "standard"
    own_domains: list[str] = Field(default_factory=list, max_length=100)
    settings: TenantSettings = Field(default_factory=TenantSettings)
    issue_key: bool = True


class UpdateTenant(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"plan": "enterprise"}]})

    name: str | None = Field(None, min_length=1, max_length=200)
    plan: PlanName | None = None
    status: Literal["active", "suspended"] | None = None
    own_domains: list[str] | None = Field(None, max_length=100)
    settings: TenantSettings | None = None


class TenantOut(ApiModel):
    id: str
    name: str
    plan: str
    status: str
    own_domains: list[str]
    settings: dict
    created_at: str
    updated_at: str


class TenantCreated(TenantOut):
    api_key: str | None = Field(None, description="The first API key, shown once.")


class TenantList(ApiModel):
    items: list[TenantOut]
    next_cursor: str | None


def _check_ips(values: list[str]) -> list[str]:
    for value in values:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return values


class CreateKey(Strict):
    name: str = Field(min_length=1, max_length=100)
    allowed_ips: list[str] = Field(default_factory=list, max_length=100,
                                   description="Addresses or CIDRs (IPv4/IPv6); empty = any address.")
    require_user: bool = False

    _ips = field_validator("allowed_ips")(_check_ips)


class UpdateKey(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "inactive"}]})

    name: str | None = Field(None, min_length=1, max_length=100)
    status: Literal["active", "inactive"] | None = None
    allowed_ips: list[str] | None = Field(None, max_length=100)
    require_user: bool | None = None

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, values):
        return None if values is None else _check_ips(values)


class KeyOut(ApiModel):
    id: str
    name: str
    prefix: str
    status: str
    allowed_ips: list[str]
    require_user: bool
    created_at: str
    last_used_at: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key. Shown only in this response; store it now.")


class KeyList(ApiModel):
    items: list[KeyOut]
    next_cursor: str | None
