"""What storing a new message owes, made durable (a transactional outbox on the message item itself).

The store writes a new message with `owed = ["pair", "announce", "count"]` (a skipped one: `["count"]`) in the
same conditional put that creates it. `complete(message)` then pays each debt and removes it from `owed`:
  - "pair": `pairing.engine.pair_message` (idempotent: links and signals are keyed);
  - "announce": `message.created` with a stable event id (`events.stable_event_id`), so a repeat is one event;
  - "count": the mailbox's `imported_count`/`skipped_count` + 1, in one transaction with removing the debt.
A worker that dies between the put and `complete` leaves `owed` on the item: the replay of the page finds the
message stored (created=False) but still owing, and completes it; `sweep()` (run by the renewer) completes
anything a dead mailbox left behind. Order is pair first, then announce, so a `message.created` consumer
finds the message's links.

Pages (`complete_page`, what the engine uses): messages created by `store_page` carry no `owed` of their own;
the transaction that creates and counts them also records ONE page debt on the mailbox (`PageDebt`, an element
of `Mailbox.owed_pages`). A page pays it with one batched pairing, one queue message carrying its events, and
its events stored and the debt removed (`settle_debts`: a small page's events in one BatchWriteItem, then one
update; a large page's in one transaction with the update) — no write per message. The
engine pays any debt a dead sync left (`pay_debts`) before it syncs; the renewer sweeps debts older than a
few minutes.
"""
from __future__ import annotations

import contextlib
import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from pynamodb.exceptions import UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.logs import logger
from chalicelib.models.conflicts import transact
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.event import Event
from chalicelib.notify.events import (RETENTION_SECONDS, emit, enqueue_events, new_event,
                                      stable_event_id)
from chalicelib.pairing.engine import PairingResult, pair_message, paired_payload
from chalicelib.pairing.page import pair_page
from chalicelib.timeutil import parse_iso

PAIR, ANNOUNCE, COUNT = "pair", "announce", "count"   # the debts `store.OWED_IMPORTED`/`OWED_SKIPPED` list

Effects = Callable[[Message], None]


def _created_payload(message: Message) -> dict:
    return {"message_id": message.message_id, "mailbox_id": message.mailbox_id, "folder": message.folder,
            "direction": message.direction}


def announce(message: Message) -> None:
    emit(message.tenant_id, "message.created", _created_payload(message),
         event_id=stable_event_id(message.tenant_id, "message.created", message.message_id))


def created_event(message: Message) -> Event:
    """The message's `message.created` event, the same item however often it is built: stable id, and
    `created_at`/`expires_at` from when the message was stored (so a replay rewrites identical bytes)."""
    event = new_event(message.tenant_id, "message.created", _created_payload(message),
                      stable_event_id(message.tenant_id, "message.created", message.message_id))
    if message.imported_at:
        event.created_at = message.imported_at
        event.expires_at = int(parse_iso(message.imported_at).timestamp()) + RETENTION_SECONDS
    return event


def paired_event(message: Message, result: PairingResult) -> Event:
    """`message.paired` for the links a page's pairing created: sent whole with the page's `message.created`
    events (after them, in the same queue message) and stored by the notifier on receipt
    (`notify/notifier.py` stores carried events it has not stored). Its id is stable for these links."""
    links = ",".join(sorted(f"{link['type']}:{link['id']}" for link in result.links))
    return new_event(message.tenant_id, "message.paired", paired_payload(message, result),
                     stable_event_id(message.tenant_id, "message.paired", f"{message.message_id}#{links}"))


def _settle(message: Message, debt: str) -> None:
    remaining = [d for d in (message.owed or []) if d != debt]
    actions = [Message.owed.set(remaining)] if remaining else [Message.owed.remove(), Message.owed_mailbox.remove()]
    if debt != COUNT:
        message.update(actions=actions, condition=Message.message_id.exists())
        return
    # The count moves with the debt in one transaction, conditioned on the debt still being owed: each stored
    # message is counted exactly once however often it is replayed.
    # A conflict (the worker's page or cursor transaction on the mailbox item) is sent again, never read as
    # "settled already": the count would be missed until the sweep.
    counter = Mailbox.skipped_count if message.skipped_reason else Mailbox.imported_count

    def build(transaction: TransactWrite) -> None:
        transaction.update(Message(message.message_id), actions=actions, condition=Message.owed.contains(COUNT))
        transaction.update(Mailbox(message.tenant_id, message.mailbox_id), actions=[counter.add(1)],
                           condition=Mailbox.mailbox_id.exists())

    if not transact(build):
        logger.info("count already settled or mailbox gone", extra={"message_id": message.message_id})
    message.owed = remaining or None


def complete(message: Message, *, pair: bool = True) -> bool:
    """Pay what `message` owes, in order; True when nothing is owed any more. A failing step is logged and
    stops the rest (never announce before pairing): the debt stays for the replay or the sweep."""
    for debt in list(message.owed or []):
        try:
            if debt == PAIR and pair:
                pair_message(message)
            elif debt == ANNOUNCE:
                announce(message)
            _settle(message, debt)
        except Exception:  # noqa: BLE001 - the message is stored; what it owes is retried later
            logger.exception("effect failed; kept for retry", extra={"debt": debt, "message_id": message.message_id})
            return False
    return True


def announce_only(message: Message) -> None:
    """For callers that store without pairing (tests, benchmarks): settles pairing unpaid."""
    complete(message, pair=False)



# --- page debts: what a page of new messages owes, one record on the mailbox --------------------------------

@dataclass(frozen=True)
class PageDebt:
    """What one insert transaction's new messages still owe (pairing, then `message.created`).

    Stored as one element of the mailbox's string set `owed_pages`, ADDed in the transaction that creates the
    messages and counts them (`store_page.insert_items`), DELETEd once they are paired and announced. Set
    ADD/DELETE are idempotent (DynamoDB Developer Guide, "Update expressions: ADD / DELETE"), so a replay or a
    concurrent sweep settles a debt at most once and never re-opens it. `key` is the element as stored."""
    key: str
    message_ids: tuple[str, ...]
    created_at: str


def page_debt(message_ids: Sequence[str], created_at: str) -> str:
    """The set element recording that `message_ids` owe their effects (compact JSON, ids sorted)."""
    return json.dumps({"at": created_at, "ids": sorted(message_ids)}, separators=(",", ":"))


def read_debt(key: str) -> PageDebt | None:
    try:
        body = json.loads(key)
        return PageDebt(key, tuple(str(i) for i in body["ids"]), str(body["at"]))
    except (ValueError, KeyError, TypeError):
        logger.error("unreadable page debt dropped", extra={"debt": key[:200]})
        return None


BATCH_WRITE_ITEMS = 25       # BatchWriteItem: at most 25 puts a request
_deferred_clears: ContextVar[set[str] | None] = ContextVar("deferred_debt_clears", default=None)


@contextlib.contextmanager
def clears_deferred() -> Iterator[set[str]]:
    """Within it, `settle_debts` stores a small page's events as ever but leaves the debts to remove in the
    yielded set instead of updating the mailbox: the caller removes them (`Mailbox.owed_pages.delete`) in a
    mailbox write it makes anyway, after those events are stored — the sync engine, in its next cursor
    transaction (`sync/engine.py`), which spares one mailbox update per page. Until then a debt stays open: a
    crash replays it (its events are the same items), as between the two steps of `settle_debts`."""
    keys: set[str] = set()
    token = _deferred_clears.set(keys)
    try:
        yield keys
    finally:
        _deferred_clears.reset(token)


def settle_debts(mailbox: Mailbox, keys: Sequence[str], events: Sequence[Event] = ()) -> None:
    """Store paid debts' `message.created` events and remove the debts from the mailbox, so that a debt is
    cleared only once its events are stored. The events are plain puts: `created_event` builds the same bytes
    on every replay and the notifier may have stored them first.

    Up to `BATCH_WRITE_ITEMS` events (a one-message push sync's page, most pages of a mailbox kept in sync):
    one BatchWriteItem, THEN the debt removed (`clear_debts`) — the order is the guarantee: a crash between the
    two leaves the debt open with its events stored, and the replay pays it again (pairing is idempotent, the
    event ids stable, the puts rewrite the same items). A transaction bills every item twice (DynamoDB
    Developer Guide, "Amazon DynamoDB Transactions", capacity management), so this is one WRU per event and
    one mailbox update instead of two of each, for one more call. More events (an initial import's pages of
    ≤ 99): ONE TransactWriteItems (the events + the mailbox, all-or-nothing), which keeps a page at a few
    calls (≤ 0.1 DynamoDB calls per message) where puts would take one call per 25 events. A mailbox deleted
    meanwhile is left deleted (the condition) and its debts with it; a conflict is sent again (`retry_conflicts`),
    never read as a deleted mailbox — the debt would stay open and be paid twice."""
    if not keys:
        return
    if len(events) <= BATCH_WRITE_ITEMS:
        if events:
            with Event.batch_write() as batch:
                for event in events:
                    batch.save(event)
        deferred = _deferred_clears.get()
        if deferred is None:
            clear_debts(mailbox, keys)
        else:                                   # the caller removes them in a mailbox write it makes anyway
            deferred.update(keys)
            _paid(mailbox, keys)
        return
    target = Mailbox(mailbox.tenant_id, mailbox.mailbox_id)

    def build(transaction: TransactWrite) -> None:
        for event in events:
            transaction.save(event)
        transaction.update(target, actions=[Mailbox.owed_pages.delete(set(keys))],
                           condition=Mailbox.mailbox_id.exists())

    if not transact(build):
        logger.info("page debts of a deleted mailbox dropped", extra={"mailbox_id": mailbox.mailbox_id})
    _paid(mailbox, keys)


def _paid(mailbox: Mailbox, keys: Sequence[str]) -> None:
    """The in-memory mailbox without the debts just removed from its item."""
    if mailbox.owed_pages:
        mailbox.owed_pages = set(mailbox.owed_pages) - set(keys) or None


def clear_debts(mailbox: Mailbox, keys: Sequence[str]) -> None:
    """Remove paid debts from the mailbox: one UpdateItem (set DELETE: idempotent). A mailbox deleted
    meanwhile is left deleted (the condition) and its debts with it."""
    target = Mailbox(mailbox.tenant_id, mailbox.mailbox_id)
    try:
        target.update(actions=[Mailbox.owed_pages.delete(set(keys))], condition=Mailbox.mailbox_id.exists())
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", "") != "ConditionalCheckFailedException":
            raise
        logger.info("page debts of a deleted mailbox dropped", extra={"mailbox_id": mailbox.mailbox_id})
    _paid(mailbox, keys)


def complete_page(messages: Sequence[Message], mailbox: Mailbox | None = None, *, pair: bool = True,
                  debts: Sequence[str] = ()) -> int:
    """Pay what a page of messages owes in a few calls; returns how many owe nothing any more.

    Messages covered by `debts` (created by `store_page`, counted in the transaction that created them): one
    batched pairing (`pairing.page.pair_page`), ONE queue message carrying their `message.created` events
    whole, followed by the `message.paired` events of the links the pairing created (`paired_event`; stored
    by the notifier) (sent BEFORE the events are stored, so a crash in between only repeats the announcement — same
    event ids — and the notifier stores an event it receives first), then per debt its events stored and the
    debt removed, never before its events (`settle_debts`). If any pairing failed the debts stay (never announced before
    paired) for the replay or the sweep. Messages with a debt of their own (`owed`: stored one by one) go
    through `complete`."""
    owing = [m for m in messages if m.owed]
    settled = len(messages) - len(owing)
    for message in owing:
        settled += complete(message, pair=pair)
    covered = [m for m in messages if not m.owed]
    if not debts:
        return settled
    if mailbox is None:
        raise ValueError("page debts are settled on their mailbox")
    paired: list[Event] = []
    if pair and covered:
        results = pair_page(covered, mailbox)
        if any(results.get(m.message_id, True) is None for m in covered):
            logger.warning("pairing failed for part of a page; its debts are kept", extra={"debts": len(debts)})
            return settled - len(covered)
        paired = [paired_event(m, result) for m in covered
                  if (result := results.get(m.message_id)) is not None and result.links and not m.private]
    events = {m.message_id: created_event(m) for m in covered}
    try:
        enqueue_events(covered[0].tenant_id, list(events.values()) + paired) if covered else None
    except Exception:  # noqa: BLE001 - the messages are stored; what they owe is retried later
        logger.exception("announcing the page failed; kept for retry", extra={"messages": len(covered)})
        return settled - len(covered)
    for key in debts:
        debt = read_debt(key)
        settle_debts(mailbox, [key], [events[i] for i in (debt.message_ids if debt else ()) if i in events])
    return settled


def pay_debts(mailbox: Mailbox, *, older_than: str | None = None,
              page_effects: Callable[..., object] = complete_page) -> int:
    """Pay the mailbox's open page debts (all, or those recorded before `older_than`, ISO) through
    `page_effects(messages, mailbox, debts=[key])`: the replay after a crash (the engine, before it syncs, with
    its own page effects) and the sweep (the renewer). Returns how many messages were settled."""
    settled = 0
    for key in sorted(mailbox.owed_pages or ()):
        debt = read_debt(key)
        if debt is None:
            settle_debts(mailbox, [key])
            continue
        if older_than is not None and debt.created_at >= older_than:
            continue
        messages = [m for m in stored_messages(debt.message_ids) if not m.owed]
        page_effects(messages, mailbox, debts=[key])
        if key not in (mailbox.owed_pages or ()):
            settled += len(messages)
    return settled


BATCH_GET_KEYS = 100          # BatchGetItem: at most 100 keys per request


def stored_messages(message_ids: Sequence[str]) -> list[Message]:
    """The stored messages among `message_ids` (consistent reads, ≤ 100 keys a BatchGetItem); a message erased
    or purged since is simply absent."""
    found: list[Message] = []
    unique = list(dict.fromkeys(message_ids))
    for start in range(0, len(unique), BATCH_GET_KEYS):
        found.extend(Message.batch_get(unique[start:start + BATCH_GET_KEYS], consistent_read=True))
    return found


def sweep(messages: Iterable[Message]) -> int:
    """Complete every given owing message; returns how many are now settled."""
    return sum(1 for message in messages if complete(message))


def left_behind(mailbox_id: str, older_than: str) -> Iterator[Message]:
    """Messages of a mailbox still owing effects, imported before `older_than` (ISO): a sync that died left
    them (a live sync settles its own within seconds). Sparse index, so this reads only owing messages."""
    for key in Message.by_owed.query(mailbox_id, Message.imported_at < older_than):
        try:
            yield Message.get(key.message_id, consistent_read=True)
        except Message.DoesNotExist:
            continue


# The page forms the engine uses for a whole page at once (sync/engine.py looks for `.page`).
complete.page = complete_page
announce_only.page = lambda messages, mailbox=None, debts=(): complete_page(messages, mailbox, pair=False,
                                                                             debts=debts)
