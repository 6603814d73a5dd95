"""Where the engine keeps its per-folder cursors: `SyncCursor` items, one per (mailbox, scope).

Invariant (closeio ImapFolderInfo): a stored cursor means "the store has incorporated every remote change up to
at least this cursor". Every write is ONE DynamoDB transaction (TransactWriteItems) holding:
  - an update of the mailbox item conditioned on `lease_owner` = the writer's lease (the lease is extended and
    any mailbox-side sync state is set in the same write), and
  - the cursor item itself,
so a worker whose lease lapsed can never move a cursor (a transaction is all-or-nothing: DynamoDB Developer
Guide, "Amazon DynamoDB Transactions"). Several folders' cursors may share one such transaction (`also`): one
mailbox update — the lease condition and extension — for all of them, each item in a transaction billed twice.

Epochs: a cursor item belongs to `Mailbox.cursor_epoch`; when the account or server of a mailbox changes the
API bumps the epoch and every older cursor reads as "initial import pending" (the store dedupes the re-listed
mail). Import window: an item records the `since` its initial import used; `import_since` moved earlier than
that re-lists the folder from the new date (duplicate-free), moved later changes nothing.

Migration: mailboxes written before this table kept `Mailbox.cursors` (a map on the mailbox item). They are read
as epoch-0 entries, and the first cursor write copies every legacy entry into items and removes the map.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from pynamodb.transactions import TransactWrite

from chalicelib.models.conflicts import transact
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.sync_cursor import SyncCursor
from chalicelib.sync.lease import Lease, LeaseLost, lease_seconds
from chalicelib.timeutil import now_iso


@dataclass
class FolderState:
    scope: str
    cursor: str | None = None
    since: str | None = None
    resyncs: list[str] = field(default_factory=list)
    updated_at: str | None = None


def mailbox_key(mailbox: Mailbox) -> str:
    return f"{mailbox.tenant_id}#{mailbox.mailbox_id}"


def _epoch(mailbox: Mailbox) -> int:
    return int(mailbox.cursor_epoch or 0)


def load_all(mailbox: Mailbox) -> dict[str, FolderState]:
    """Every folder's state for the mailbox's current epoch (one Query)."""
    states: dict[str, FolderState] = {}
    for scope, entry in (mailbox.cursors or {}).items():
        if _epoch(mailbox) == 0 and entry:
            states[scope] = FolderState(scope, entry.get("cursor"), entry.get("since"),
                                        list(entry.get("resyncs") or []), entry.get("updated_at"))
    for item in SyncCursor.query(mailbox_key(mailbox), consistent_read=True):
        if int(item.epoch or 0) == _epoch(mailbox):
            states[item.scope] = FolderState(item.scope, item.cursor, item.since, list(item.resyncs or []),
                                             item.updated_at)
        else:   # another account's cursor: start afresh, keep the resync history (the budget is per mailbox)
            states[item.scope] = FolderState(item.scope, resyncs=list(item.resyncs or []))
    return states


def _item(mailbox: Mailbox, state: FolderState) -> SyncCursor:
    return SyncCursor(mailbox_key(mailbox), state.scope, cursor=state.cursor, epoch=_epoch(mailbox),
                      since=state.since, resyncs=list(state.resyncs), updated_at=state.updated_at or now_iso())


def save(mailbox: Mailbox, lease: Lease | None, state: FolderState, mailbox_actions: list | None = None,
         also: Sequence[FolderState] = ()) -> None:
    """Persist one folder's state (and `mailbox_actions`) as the lease holder — with other folders' states
    (`also`) in the same transaction, behind the same one mailbox update; raises LeaseLost."""
    state.updated_at = now_iso()
    also = [other for other in also if other.scope != state.scope]
    for other in also:
        other.updated_at = state.updated_at
    actions = list(mailbox_actions or [])
    condition = Mailbox.mailbox_id.exists()
    if lease is not None:
        condition = condition & (Mailbox.lease_owner == lease.owner)
        actions.append(Mailbox.lease_expires_at.set(time.time() + lease_seconds()))
    saved = {state.scope} | {other.scope for other in also}
    legacy = {scope: entry for scope, entry in (mailbox.cursors or {}).items() if scope not in saved}
    if mailbox.cursors is not None:
        actions.append(Mailbox.cursors.remove())
    if not actions:
        actions.append(Mailbox.updated_at.set(mailbox.updated_at or now_iso()))
    def build(transaction: TransactWrite) -> None:
        transaction.update(Mailbox(mailbox.tenant_id, mailbox.mailbox_id), actions=actions, condition=condition)
        transaction.save(_item(mailbox, state))
        for other in also:
            transaction.save(_item(mailbox, other))
        for scope, entry in legacy.items():
            transaction.save(_item(mailbox, FolderState(scope, (entry or {}).get("cursor"), (entry or {}).get("since"),
                                                        list((entry or {}).get("resyncs") or []))))

    # the mailbox item meets a one-message insert's count, an erasure, the API's writes: their conflicts are sent
    # again (`transact`); a conflict left after that is raised — no lost lease: the job is delivered again
    if not transact(build):
        raise LeaseLost(mailbox.mailbox_id)
    mailbox.cursors = None


def delete_all(mailbox: Mailbox) -> None:
    """Remove every cursor item of a deleted mailbox."""
    with SyncCursor.batch_write() as batch:
        for item in SyncCursor.query(mailbox_key(mailbox)):
            batch.delete(item)
