"""The one provider interface every mail backend implements (IMAP, Gmail, Microsoft Graph).

Shapes (frozen dataclasses) are the same for every provider, and a provider raises only `ProviderError` with
one of the few `ErrorCode`s — nothing outside `providers/` sees HTTP or IMAP exceptions; each provider's
`errors.py` is the one place its failures are translated (twenty `parse-gmail-message-list-fetch-error.util.ts`).

Cursor invariant (closeio ImapFolderInfo, twenty messaging-cursor.service): a cursor returned in
`ChangeSet.next_cursor` may be persisted only after every ref in `ChangeSet.new` (and every unknown ref in
`ChangeSet.changed`) has been stored; persisted cursors only move forward. `changes()` returns bounded pages:
when `has_more` is true the caller stores the page, saves the cursor and asks again with it.

Error scope: NOT_FOUND means one folder or one message vanished. A mailbox-wide "not found" (a Microsoft
mailbox that is inactive or unlicensed, a deleted Google account) is not a vanished folder: providers raise
PERMANENT (or AUTH_REVOKED) for it so the mailbox shows an error instead of silently skipping folders.
THROTTLED is a provider rate limit (Gmail 429 / 403 `rateLimitExceeded`, Graph 429/503 with Retry-After): the
engine re-queues the job after `retry_after` without counting it as a failed delivery.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Iterator, Protocol, Sequence


PAGE_SIZE = 200      # refs per ChangeSet the engine asks `changes()` for, and the idle check's same first question

class ErrorCode(str, enum.Enum):
    TEMPORARY = "temporary"              # retry with backoff (honour retry_after)
    THROTTLED = "throttled"              # provider rate limit: re-queue after retry_after, never dead-letter
    AUTH_REVOKED = "auth_revoked"        # credentials refused/revoked → mailbox auth_error
    NEEDS_ADMIN_CONSENT = "needs_admin_consent"  # Microsoft tenant admin must consent
    CURSOR_INVALID = "cursor_invalid"    # UIDVALIDITY changed / stale historyId / delta 410 → bounded resync
    NOT_FOUND = "not_found"              # a message or folder vanished (never the whole mailbox)
    PERMANENT = "permanent"              # misconfiguration or refusal that retrying will not fix


class ProviderError(Exception):
    """`maybe_sent` (read only for `MailProvider.send`): the request reached the provider and the failure came
    before its answer — the message may have been accepted, so it must not be submitted again blindly."""

    def __init__(self, code: ErrorCode, detail: str, *, retry_after: float | None = None,
                 maybe_sent: bool = False):
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class MessageRef:
    """A message as the provider knows it. `provider_id` is stable within the folder's cursor epoch
    (IMAP: "<uidvalidity>:<uid>"; Gmail: message id; Graph: immutable id).

    `seen`: the message's read state at the source when the provider told it with this ref — IMAP `\\Seen`
    (RFC 3501 §2.3.2), Gmail's `UNREAD` label absent, Graph `isRead` — else None (unknown). Mailbridge only
    reads it; it never changes read state at the provider.

    `also_in`: the other role folders ("inbox", "sent") that hold this very message, not a copy of it — Gmail's
    mail to self is ONE message labelled INBOX and SENT. The store takes a message it stored under one of them
    as this one (`store.prepare`), so adding or dropping a folder later never stores it twice."""
    folder: str
    provider_id: str
    size: int | None = None
    thread_id: str | None = None
    seen: bool | None = None
    also_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeSet:
    """One page of remote changes in one folder.

    - `new`: refs the provider knows are new since the cursor; the engine fetches and stores them.
    - `changed`: refs whose state changed that the store may already hold (Graph delta and Gmail label
      changes re-list known ids). The engine looks them up and fetches only the ones it has not stored.
    - `removed`: provider ids gone from the folder (→ `removed_at_source`; nothing is deleted).
    - `flags`: refs whose read state (`MessageRef.seen`) and nothing else changed (IMAP CONDSTORE
      `CHANGEDSINCE`, Gmail `UNREAD` label history): the engine updates the stored ones and never fetches.
    The engine also takes the read state of `changed` refs it already stores (Graph delta re-lists a message
    whose `isRead` changed).
    """
    folder: str
    new: tuple[MessageRef, ...]
    removed: tuple[str, ...]
    previous_cursor: str | None
    next_cursor: str
    changed: tuple[MessageRef, ...] = ()
    flags: tuple[MessageRef, ...] = ()
    has_more: bool = False
    resynced: bool = False
    round_trips: int = 0


@dataclass(frozen=True)
class FetchedMessage:
    """One fetched ref: `raw` bytes; or raw=None with `skipped_reason` (over the size limit); or
    `vanished=True` when the provider answered "not found" for this one item (a batch API's per-part 404)."""
    ref: MessageRef
    raw: bytes | None
    skipped_reason: str | None = None
    vanished: bool = False


@dataclass(frozen=True)
class ThreadHint:
    """What a reply or forward needs from its original: RFC 5322 §3.6.4 `In-Reply-To`/`References` (already in
    the raw MIME the caller built) and the provider's own ids (Gmail `threadId` for `messages.send`; Graph's
    message id for `/messages/{id}/reply`)."""
    mode: str = "new"                         # new | reply | reply_all | forward
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    provider_thread_id: str | None = None
    provider_message_id: str | None = None


@dataclass(frozen=True)
class SendResult:
    """`provider_message_id` is None when the provider does not say (Graph `sendMail` answers 202 with no
    body); the sent copy is then found by its Message-ID on the next sync."""
    provider_message_id: str | None
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


@dataclass(frozen=True)
class ProviderContext:
    """What every provider gets: whose mailbox it is, and injectables. Kinds extend it with their own
    settings (`ImapContext`: vetted addresses and passwords; `OAuthContext`: a token source)."""
    tenant_id: str
    mailbox_id: str
    email: str
    sleep: Callable[[float], None] | None = None
    timeout: float = 30.0


class AccessTokens(Protocol):
    """A token source as providers see it (`credentials.tokens.TokenSource`)."""

    def access_token(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class OAuthContext(ProviderContext):
    """OAuth kinds (Gmail, Graph): a token source instead of passwords, and the kind's settings (endpoints,
    push configuration) — never a secret in `settings`."""
    tokens: AccessTokens | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PushState:
    """A provider push registration (Gmail `users.watch`, Graph subscriptions): when it lapses and the
    provider's ids for it. `secrets` (a Graph `clientState`) are stored encrypted, never in `resource`.
    The renewer renews it daily (sync/push.py)."""
    expires_at: str                      # ISO 8601 UTC
    resource: dict
    secrets: dict | None = None


class MailProvider(abc.ABC):
    kind: str = ""

    @abc.abstractmethod
    def folders(self) -> list[str]:
        """Logical folders synced, e.g. ["inbox", "sent"]."""

    @abc.abstractmethod
    def changes(self, folder: str, cursor: str | None, *, since: date, page_size: int) -> ChangeSet:
        """New/changed/removed refs after `cursor` (None = initial import of mail received on/after `since`)."""

    @abc.abstractmethod
    def fetch(self, refs: Sequence[MessageRef], *, max_bytes: int) -> Iterator[FetchedMessage]:
        """Raw RFC 5322 bytes of each ref, never changing server state (IMAP: BODY.PEEK[]). A message over
        `max_bytes` is yielded with raw=None and a skipped_reason; one that vanished with vanished=True. Raising
        NOT_FOUND for a batch makes the engine retry its refs one by one."""

    @abc.abstractmethod
    def test_connection(self) -> None:
        """Log in and look at the inbox; raise ProviderError on failure."""

    @abc.abstractmethod
    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str],
             thread: ThreadHint | None = None) -> SendResult:
        """Submit a message through the mailbox's own provider."""

    def append_sent_copy(self, raw: bytes) -> bool:
        """File a copy of a message just sent into the Sent folder; True when filed. Only IMAP needs it (SMTP
        submission files nothing); Gmail and Graph file sent mail themselves, so the default does nothing."""
        return False

    def has_sent_copy(self, rfc_message_id: str) -> bool | None:
        """Whether the provider's Sent folder holds a message with this Message-ID; None when the provider
        cannot tell. The outbox asks after an attempt died mid-send, so it never resends blindly."""
        return None

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> "MailProvider":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PushSubscriber(abc.ABC):
    """Push lifecycle, implemented by OAuth kinds (Gmail watch, Graph subscriptions) and driven by the
    renewer; IMAP does not implement it. Each call raises ProviderError like the rest of the interface."""

    def push_configured(self) -> bool:
        """False when this mailbox's settings ask for no push (a gmail mail server without `push`): the consent
        and the renewer then register nothing and report nothing; mail still arrives on schedule."""
        return True

    @abc.abstractmethod
    def start_push(self) -> PushState:
        """Register for notifications (Gmail `users.watch`; Graph `POST /subscriptions` per folder)."""

    @abc.abstractmethod
    def renew_push(self, state: PushState) -> PushState:
        """Extend the registration before `state.expires_at` (Gmail: watch again; Graph: PATCH expiry)."""

    @abc.abstractmethod
    def stop_push(self, state: PushState) -> None:
        """Remove the registration (Gmail `users.stop`; Graph `DELETE /subscriptions/{id}`)."""
