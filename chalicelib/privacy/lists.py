"""Never-import and never-pair lists: normalization, storage and matching.

An entry is an address (`jan@acme.example`) or a whole domain (`@acme.example`, which also covers its
subdomains). Normalization: the address is case-folded (Unicode `str.casefold`; providers and people treat
local parts case-insensitively even though RFC 5321 §2.4 lets a server distinguish them) and the domain is
converted to its ASCII form with IDNA 2008 / UTS #46 (the `idna` package; RFC 5891), so
`Jan@BÜCHER.example` and `jan@xn--bcher-kva.example` are one entry.

Which list applies: the tenant's (scope "tenant") to every mailbox, plus the mailbox owner's (scope
"user#<id>") to that user's personal mailboxes. Shared mailboxes have no owner: only the tenant's list.

Who is matched (the counterpart, as pairing defines it): the sender of inbound mail; every recipient (To, Cc,
Bcc) of outbound mail. A message with any counterpart on the never-import list is not stored; never-pair
counterparts are ignored by pairing (automatic, thread and late pairing) like the pairing blocklist.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable

from pynamodb.transactions import TransactWrite

from chalicelib.models.mailbox import Mailbox
from chalicelib.models.privacy import TENANT_SCOPE, PrivacyList, user_scope
from chalicelib.privacy.erased import ErasedPeople
from chalicelib.privacy.erased import for_tenant as erased_people
from chalicelib.security.addresses import ascii_domain
from chalicelib.timeutil import isoformat, now_iso, utcnow

MAX_ENTRIES = 1000           # per list (keeps an item far below DynamoDB's 400 KB)


class InvalidEntry(ValueError):
    pass


def _ascii_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").casefold()
    if not domain or " " in domain:
        raise InvalidEntry("empty domain")
    try:
        return ascii_domain(domain)
    except ValueError as exc:
        raise InvalidEntry(str(exc)) from None


def normalize_entry(value: str) -> str:
    """"local@domain" or "@domain" in normal form; raises InvalidEntry."""
    text = (value or "").strip()
    local, at, domain = text.rpartition("@")
    if not at or any(c.isspace() or c in "<>,;" for c in text):
        raise InvalidEntry(f"{value!r} is neither an address nor an @domain")
    return f"{local.casefold()}@{_ascii_domain(domain)}" if local else f"@{_ascii_domain(domain)}"


def normalize_address(value: str | None) -> str | None:
    """An address in the entries' normal form, or None when it cannot be one."""
    try:
        entry = normalize_entry(value or "")
    except InvalidEntry:
        return None
    return None if entry.startswith("@") else entry


def normalize_entries(values: Iterable[str]) -> list[str]:
    entries = sorted({normalize_entry(v) for v in values})
    if len(entries) > MAX_ENTRIES:
        raise InvalidEntry(f"at most {MAX_ENTRIES} entries")
    return entries


@dataclass(frozen=True)
class Matcher:
    """Addresses and domains of one or more lists."""
    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[str]) -> "Matcher":
        entries = list(entries)
        return cls(frozenset(e for e in entries if not e.startswith("@")),
                   frozenset(e[1:] for e in entries if e.startswith("@")))

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def matches(self, address: str | None) -> bool:
        normal = normalize_address(address)
        if normal is None:
            return False
        if normal in self.addresses:
            return True
        domain = normal.rpartition("@")[2]
        return any(domain == d or domain.endswith("." + d) for d in self.domains)


RETENTION_PERIODS = (30, 90, 180, 365, 730, 1095, 1825, 2555, 3650)   # days; one S3 lifecycle rule each
RETENTION_TAG = "mailbridge-retention-days"

NEVER_IMPORT = "never_import"     # refusal reasons (`refusal`): a never-import list names a counterpart,
ERASED = "erased"                 # the message names an erased person (privacy/erased.py),
PAST_RETENTION = "past_retention"  # it is older than the tenant's retention period


def retention_cutoff(days: int, now=None) -> str:
    """The `Message.date` bound of a retention period: mail dated before it is past the period (the sweeper
    deletes it, the store does not store it)."""
    return isoformat((now or utcnow()) - timedelta(days=days))


@dataclass(frozen=True)
class MailboxLists:
    never_import: Matcher = Matcher()
    never_pair: Matcher = Matcher()
    retention_days: int | None = None
    erasures: int = 0                                        # the tenant's erasure count, as read
    erased: ErasedPeople = field(default_factory=ErasedPeople)

    @property
    def raw_tagging(self) -> str | None:
        """The S3 object tag that lets the bucket's lifecycle rule for the tenant's period expire a raw object
        (infra/resources.yaml); None when the tenant keeps mail."""
        return f"{RETENTION_TAG}={self.retention_days}" if self.retention_days else None


def get_list(tenant_id: str, scope: str) -> PrivacyList:
    try:
        return PrivacyList.get(tenant_id, scope)
    except PrivacyList.DoesNotExist:
        return PrivacyList(tenant_id, scope, never_import=[], never_pair=[], updated_at="")


def put_list(tenant_id: str, scope: str, never_import: Iterable[str], never_pair: Iterable[str]) -> PrivacyList:
    """Replace a list (entries normalized; raises InvalidEntry); the tenant's retention period is kept."""
    actions = [PrivacyList.never_import.set(normalize_entries(never_import)),
               PrivacyList.never_pair.set(normalize_entries(never_pair)), PrivacyList.updated_at.set(now_iso())]
    PrivacyList(tenant_id, scope).update(actions=actions)    # conflicts sent again (see `check_erasures`)
    return get_list(tenant_id, scope)


def set_retention(tenant_id: str, days: int | None) -> PrivacyList:
    """The tenant's retention period (one of `RETENTION_PERIODS`, or None = kept; raises InvalidEntry)."""
    if days is not None and days not in RETENTION_PERIODS:
        raise InvalidEntry(f"retention_days must be one of {', '.join(map(str, RETENTION_PERIODS))} or null")
    action = PrivacyList.retention_days.set(days) if days else PrivacyList.retention_days.remove()
    PrivacyList(tenant_id, TENANT_SCOPE).update(actions=[action, PrivacyList.updated_at.set(now_iso())])
    return get_list(tenant_id, TENANT_SCOPE)


def scopes_for(mailbox: Mailbox) -> list[str]:
    scopes = [TENANT_SCOPE]
    if mailbox.kind == "personal" and mailbox.owner_user_id:
        scopes.append(user_scope(mailbox.owner_user_id))
    return scopes


def lists_for(mailbox: Mailbox) -> MailboxLists:
    """The lists that apply to `mailbox` (one BatchGetItem: the tenant's and the owner's)."""
    items = list(PrivacyList.batch_get([(mailbox.tenant_id, scope) for scope in scopes_for(mailbox)]))
    tenant = next((i for i in items if i.scope == TENANT_SCOPE), None)
    retention = int(tenant.retention_days) if tenant is not None and tenant.retention_days else None
    erasures = int(tenant.erasures) if tenant is not None and tenant.erasures else 0
    return MailboxLists(Matcher.of(e for i in items for e in (i.never_import or [])),
                        Matcher.of(e for i in items for e in (i.never_pair or [])), retention, erasures,
                        erased_people(mailbox.tenant_id, erasures))


def count_erasure(tenant_id: str) -> None:
    """One more erasure requested for the tenant: the store reads the erased people anew (privacy/erased.py).
    Every insert of the tenant's mail checks this item in its transaction (`check_erasures`), so the update can
    meet one under way: it is sent again (`PrivacyList` sends its conflicts again, `SendsConflictsAgain`) — an
    uncounted erasure would let the store keep its cached erased people and store the person's mail again."""
    PrivacyList(tenant_id, TENANT_SCOPE).update(actions=[PrivacyList.erasures.add(1),
                                                         PrivacyList.updated_at.set(now_iso())])


class ErasuresMoved(Exception):
    """An erasure was requested after the store read the lists: nothing of its transaction was written."""


def check_erasures(transaction: TransactWrite, tenant_id: str, erasures: int | None) -> None:
    """Add to `transaction` the ConditionCheck that the tenant's erasure count is still `erasures` (the count
    read with the lists, `MailboxLists.erasures`). Every transaction that creates `Message` items carries it, so
    no item is created with lists read before an erasure was requested: `erasure.erase.create` saves the job,
    then counts it, and the job reads the mailboxes only after that — an insert either commits before the count
    moved (the job finds its item) or is cancelled and the caller reads the lists again (`ErasuresMoved`).
    PynamoDB sends ConditionChecks first (`Connection.transact_write_items`), so a cancellation's first reason
    is this check's. The check makes the tenant's privacy item part of every insert of the tenant's mail, so
    inserts of its mailboxes conflict there; the callers send a conflicted transaction again
    (`models.conflicts.retry_conflicts`)."""
    unchanged = PrivacyList.erasures == erasures if erasures else PrivacyList.erasures.does_not_exist()
    transaction.condition_check(PrivacyList, tenant_id, TENANT_SCOPE, condition=unchanged)


def _emails(entries) -> list[str]:
    values = entries if isinstance(entries, list) else [entries]
    return [e.get("email") for e in values if isinstance(e, dict) and e.get("email")]


def counterparts(message) -> list[str]:
    """From for inbound mail, every recipient (To, Cc, Bcc) for outbound mail (`Message` or a like object)."""
    if message.direction == "outbound":
        return _emails(list(message.to or []) + list(message.cc or []) + list(message.bcc or []))
    return _emails(message.from_addr or {})


def participants(message) -> list[str]:
    """Everyone a message names: From, Sender, To, Cc, Bcc, Reply-To (erasure). Sender is stored since
    2026-12-02; older items have none (their raw MIME still holds it)."""
    return _emails(message.from_addr or {}) + _emails(getattr(message, "sender", None) or {}) + _emails(
        list(message.to or []) + list(message.cc or []) + list(message.bcc or []) + list(message.reply_to or []))


def never_import(message, lists: MailboxLists) -> bool:
    return bool(lists.never_import) and any(lists.never_import.matches(a) for a in counterparts(message))


def erased_refusal(message, lists: MailboxLists) -> str | None:
    """`ERASED` when `message` names an erased person and is dated up to their erasure (or undated), else None:
    the one refusal that applies to every stored message, the outbox's sent copies included (never-import lists
    do not apply to those, docs/api.md)."""
    if lists.erased and lists.erased.names((normalize_address(a) for a in participants(message)), message.date,
                                           message.parse_errors or ()):
        return ERASED
    return None


def refusal(message, lists: MailboxLists, now=None) -> str | None:
    """Why the store must not store `message` (a `Message` about to be created), or None: a never-import
    counterpart; an erased participant (mail dated up to their erasure: erased stays erased); a date older
    than the tenant's retention period (the sweeper would delete it — a re-list must not bring it back)."""
    if never_import(message, lists):
        return NEVER_IMPORT
    if erased_refusal(message, lists):
        return ERASED
    if lists.retention_days and message.date and message.date < retention_cutoff(lists.retention_days, now):
        return PAST_RETENTION
    return None
