"""The one provider interface every mail backend implements (IMAP now; Gmail and Graph later).

Shapes (frozen dataclasses) are the same for every provider, and a provider raises only `ProviderError` with
one of the few `ErrorCode`s — nothing outside `providers/` sees HTTP or IMAP exceptions (DESIGN §2).

Cursor invariant (closeio ImapFolderInfo, twenty messaging-cursor.service): a cursor returned in
`ChangeSet.next_cursor` may be persisted only after every ref in `ChangeSet.new` has been stored; persisted
cursors only move forward. `changes()` returns bounded pages: when `has_more` is true the caller stores the
page, saves the cursor and asks again with it.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Iterator, Sequence


class ErrorCode(str, enum.Enum):
    TEMPORARY = "temporary"              # retry with backoff (honour retry_after)
    AUTH_REVOKED = "auth_revoked"        # credentials refused/revoked → mailbox auth_error
    NEEDS_ADMIN_CONSENT = "needs_admin_consent"  # Microsoft tenant admin must consent
    CURSOR_INVALID = "cursor_invalid"    # UIDVALIDITY changed / stale historyId / delta 410 → bounded resync
    NOT_FOUND = "not_found"              # a message or folder vanished
    PERMANENT = "permanent"              # misconfiguration or refusal that retrying will not fix


class ProviderError(Exception):
    def __init__(self, code: ErrorCode, detail: str, *, retry_after: float | None = None):
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class MessageRef:
    """A message as the provider knows it. `provider_id` is stable within the folder's cursor epoch
    (IMAP: "<uidvalidity>:<uid>"; Gmail: message id; Graph: immutable id)."""
    folder: str
    provider_id: str
    size: int | None = None
    thread_id: str | None = None


@dataclass(frozen=True)
class ChangeSet:
    folder: str
    new: tuple[MessageRef, ...]
    removed: tuple[str, ...]
    previous_cursor: str | None
    next_cursor: str
    changed: tuple[MessageRef, ...] = ()
    has_more: bool = False
    resynced: bool = False
    round_trips: int = 0


@dataclass(frozen=True)
class FetchedMessage:
    ref: MessageRef
    raw: bytes | None
    skipped_reason: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    thread_id: str | None = None


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect. `address` is the SSRF-vetted IP to dial; `host` is kept for TLS SNI and
    certificate verification."""
    host: str
    port: int
    security: str           # "tls" | "starttls" | "none"
    username: str
    login_method: str = "plain"
    address: str | None = None


@dataclass
class ProviderContext:
    """Everything a provider needs: the mailbox's settings, its decrypted secrets, and injectables."""
    tenant_id: str
    mailbox_id: str
    email: str
    imap: ConnectionSettings | None = None
    smtp: ConnectionSettings | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    sleep: Callable[[float], None] | None = None
    timeout: float = 30.0


class MailProvider(abc.ABC):
    kind: str = ""

    @abc.abstractmethod
    def folders(self) -> list[str]:
        """Logical folders synced, e.g. ["inbox", "sent"]."""

    @abc.abstractmethod
    def changes(self, folder: str, cursor: str | None, *, since: date, page_size: int) -> ChangeSet:
        """New/removed refs after `cursor` (None = initial import of mail received on/after `since`)."""

    @abc.abstractmethod
    def fetch(self, refs: Sequence[MessageRef], *, max_bytes: int) -> Iterator[FetchedMessage]:
        """Raw RFC 5322 bytes of each ref, never changing server state (IMAP: BODY.PEEK[]). A message over
        `max_bytes` is yielded with raw=None and a skipped_reason."""

    @abc.abstractmethod
    def test_connection(self) -> None:
        """Log in and select the inbox; raise ProviderError on failure."""

    @abc.abstractmethod
    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> SendResult:
        """Submit a message through the mailbox's own provider."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> "MailProvider":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_REGISTRY: dict[str, Callable[[ProviderContext], MailProvider]] = {}


def register(kind: str, factory: Callable[[ProviderContext], MailProvider]) -> None:
    _REGISTRY[kind] = factory


def create_provider(kind: str, context: ProviderContext) -> MailProvider:
    """Explicit registry: provider kind → adapter. An unknown kind raises (no silent default)."""
    from chalicelib.providers import registry  # noqa: F401  (registers the built-in providers)
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown mail provider kind {kind!r}") from None
    return factory(context)
