"""Request/response models for user notification settings, the in-app feed and the tenant's SMTP relay."""

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from chalicelib.api.schemas.common import ApiModel, ListQuery, Strict
from chalicelib.api.schemas.mail_servers import Security, normalize_host
from chalicelib.api.schemas.mailboxes import Password, check_email

Channel = Literal["in_app", "email", "off"]


class Channels(Strict):
    new_mail: Channel | None = None
    pairing_signal: Channel | None = None
    mailbox_attention: Channel | None = None


class PutNotificationSettings(Strict):
    channels: Channels = Field(default_factory=Channels)
    email: str | None = Field(None, min_length=3, max_length=254, description="Where email digests go")

    _email = field_validator("email")(lambda cls, v: None if v is None else check_email(v))


class NotificationSettingsOut(ApiModel):
    user_id: str
    channels: dict[str, Channel]
    email: str | None = None


class FeedQuery(ListQuery):
    unread: bool = False


class NotificationOut(ApiModel):
    id: str
    kind: str
    channel: str
    event_id: str
    event_type: str
    title: str
    data: dict
    created_at: str
    read_at: str | None = None
    emailed_at: str | None = None


class Feed(ApiModel):
    items: list[NotificationOut]
    next_cursor: str | None = None
    unread_count: int


class Marked(ApiModel):
    marked: int


class PutRelay(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "host": "smtp.acme.example", "port": 587, "security": "starttls", "username": "digest@acme.example",
        "password": "app-password", "from_address": "digest@acme.example", "digest_minutes": 15}]})

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(587, ge=1, le=65535)
    security: Security = "starttls"
    username: str = Field(min_length=1, max_length=320)
    password: Password | None = Field(None, description="Write-only; omitted on update keeps the stored one")
    from_address: str = Field(min_length=3, max_length=254)
    digest_minutes: int = Field(15, ge=1, le=1440, description="At most one digest per user per this many minutes")

    _host = field_validator("host")(lambda cls, v: normalize_host(v))
    _from = field_validator("from_address")(lambda cls, v: check_email(v))


class RelayOut(ApiModel):
    host: str
    port: int
    security: str
    username: str | None = None
    has_password: bool
    from_address: str
    digest_minutes: int
    created_at: str
    updated_at: str
