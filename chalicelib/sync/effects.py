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
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.notify.events import emit, stable_event_id
from chalicelib.pairing.engine import pair_message

PAIR, ANNOUNCE, COUNT = "pair", "announce", "count"   # the debts `store.OWED_IMPORTED`/`OWED_SKIPPED` list

Effects = Callable[[Message], None]


def announce(message: Message) -> None:
    emit(message.tenant_id, "message.created",
         {"message_id": message.message_id, "mailbox_id": message.mailbox_id, "folder": message.folder,
          "direction": message.direction},
         event_id=stable_event_id(message.tenant_id, "message.created", message.message_id))


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
