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

Pages (`complete_page`, what the engine uses): messages created by `store_page` were counted in the
transaction that created them and owe `["pair", "announce"]`; a page pays them with one batched pairing, one
queue message carrying its events, and one transaction per 50 messages storing the events and clearing the
debts.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.event import Event
from chalicelib.notify.events import emit, enqueue_events, new_event, stable_event_id
from chalicelib.pairing.engine import pair_message
from chalicelib.pairing.page import pair_page

PAIR, ANNOUNCE, COUNT = "pair", "announce", "count"   # the debts `store.OWED_IMPORTED`/`OWED_SKIPPED` list

Effects = Callable[[Message], None]


def _created_payload(message: Message) -> dict:
    return {"message_id": message.message_id, "mailbox_id": message.mailbox_id, "folder": message.folder,
            "direction": message.direction}


def announce(message: Message) -> None:
    emit(message.tenant_id, "message.created", _created_payload(message),
         event_id=stable_event_id(message.tenant_id, "message.created", message.message_id))


def created_event(message: Message) -> Event:
    return new_event(message.tenant_id, "message.created", _created_payload(message),
                     stable_event_id(message.tenant_id, "message.created", message.message_id))


def _settle(message: Message, debt: str) -> None:
    remaining = [d for d in (message.owed or []) if d != debt]
    actions = [Message.owed.set(remaining)] if remaining else [Message.owed.remove(), Message.owed_mailbox.remove()]
    if debt != COUNT:
        message.update(actions=actions, condition=Message.message_id.exists())
        return
    # The count moves with the debt in one transaction, conditioned on the debt still being owed: each stored
    # message is counted exactly once however often it is replayed.
    counter = Mailbox.skipped_count if message.skipped_reason else Mailbox.imported_count
    try:
        with TransactWrite(connection=transaction_connection()) as transaction:
            transaction.update(Message(message.message_id), actions=actions,
                               condition=Message.owed.contains(COUNT))
            transaction.update(Mailbox(message.tenant_id, message.mailbox_id), actions=[counter.add(1)],
                               condition=Mailbox.mailbox_id.exists())
    except TransactWriteError as exc:
        if getattr(exc, "cause_response_code", "") != "TransactionCanceledException":
            raise
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



SETTLE_PER_TRANSACTION = 50   # two actions each (the message, its event): TransactWriteItems takes 100


def _settle_one(message: Message, event: Event | None) -> None:
    """The fallback of `_settle_page`: store the event (if absent), then clear the debts."""
    if event is not None:
        try:
            event.save(condition=Event.event_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    try:
        message.update(actions=[Message.owed.remove(), Message.owed_mailbox.remove()],
                       condition=Message.owed.exists())
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", "") != "ConditionalCheckFailedException":
            raise


def _settle_page(messages: Sequence[Message], events: dict[str, Event]) -> None:
    """Store the page's `message.created` events and clear the messages' debts, ≤ 50 messages a transaction
    (all-or-nothing: an event is stored exactly when its debt is cleared). A transaction cancelled because a
    debt was already cleared (a concurrent sweep) falls back to one message at a time."""
    for start in range(0, len(messages), SETTLE_PER_TRANSACTION):
        chunk = messages[start:start + SETTLE_PER_TRANSACTION]
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                for message in chunk:
                    transaction.update(Message(message.message_id),
                                       actions=[Message.owed.remove(), Message.owed_mailbox.remove()],
                                       condition=Message.owed.exists())
                    if message.message_id in events:
                        transaction.save(events[message.message_id])
        except TransactWriteError as exc:
            if getattr(exc, "cause_response_code", "") != "TransactionCanceledException":
                raise
            for message in chunk:
                _settle_one(message, events.get(message.message_id))
        for message in chunk:
            message.owed = None
            message.owed_mailbox = None


def complete_page(messages: Sequence[Message], mailbox: Mailbox | None = None, *, pair: bool = True) -> int:
    """Pay what a page of messages owes in a few calls; returns how many owe nothing any more.

    Messages created by `store_page` owe `pair`/`announce` (their count moved in the transaction that created
    them): one batched pairing (`pairing.page.pair_page`), ONE queue message carrying their `message.created`
    events whole (sent BEFORE the events are stored and the debts cleared, so a crash in between only repeats
    the announcement — same event ids — and the notifier stores an event it receives first), then the events
    stored and the debts cleared together (`_settle_page`). A message whose pairing failed keeps its debts
    (never announced before it is paired). Messages owing `count` (stored one by one) go through `complete`."""
    owing = [m for m in messages if m.owed]
    settled = len(messages) - len(owing)
    batch = [m for m in owing if COUNT not in m.owed]
    for message in owing:
        if COUNT in message.owed:
            settled += complete(message, pair=pair)
    if not batch:
        return settled
    if pair:
        results = pair_page([m for m in batch if PAIR in m.owed], mailbox)
        batch = [m for m in batch if results.get(m.message_id, True) is not None]
    events = {m.message_id: created_event(m) for m in batch if ANNOUNCE in m.owed}
    try:
        enqueue_events(batch[0].tenant_id, list(events.values())) if batch else None
    except Exception:  # noqa: BLE001 - the messages are stored; what they owe is retried later
        logger.exception("announcing the page failed; kept for retry", extra={"messages": len(batch)})
        return settled
    _settle_page(batch, events)
    return settled + len(batch)


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
announce_only.page = lambda messages, mailbox=None: complete_page(messages, mailbox, pair=False)
