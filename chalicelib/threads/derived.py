"""What is derived from a stored message besides its pairing: its conversation (`threads/assign.py`) and its
search postings (`search/index.py`). Both are made in the notifier from a page's `message.created` events
(`remember`), so ingest stays at its batched cost and a message is in its thread and searchable within
seconds; both are idempotent, so a redelivered events message changes nothing. `forget` undoes both (removal
at the source); `erase` also deletes the thread keys (the purge and erasure path, `erasure/delete.py`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from chalicelib.models.message import Message
from chalicelib.search import index as search_index
from chalicelib.threads import assign

BATCH_GET_KEYS = 100


def load(tenant_id: str, message_ids: Iterable[str]) -> list[Message]:
    """The tenant's stored messages among `message_ids` (consistent reads, ≤ 100 keys a request)."""
    wanted = list(dict.fromkeys(message_ids))
    found: list[Message] = []
    for start in range(0, len(wanted), BATCH_GET_KEYS):
        found += [m for m in Message.batch_get(wanted[start:start + BATCH_GET_KEYS], consistent_read=True)
                  if m.tenant_id == tenant_id]
    return found


def remember(tenant_id: str, message_ids: Iterable[str]) -> int:
    """Thread and index the tenant's messages `message_ids` (those removed at the source are skipped)."""
    messages = [m for m in load(tenant_id, message_ids) if not m.removed_at_source]
    if not messages:
        return 0
    assign.assign(messages)
    return search_index.index(messages)


def forget(messages: Sequence[Message]) -> None:
    """Take messages out of their conversations and the search index (idempotent)."""
    for message in messages:
        assign.forget(message)
    search_index.forget(messages)


def erase(messages: Sequence[Message]) -> int:
    """`forget`, and delete the thread keys the messages wrote (a purge or an erasure: `erasure/delete.py`);
    returns how many keys were deleted."""
    forget(messages)
    return assign.forget_keys(messages)
