"""`pair_page`: pairing for a page of newly stored messages with ONE directory read for all of them.

`engine.pair_message` reads, per message, the index keys of its addresses, domains, tags and parent messages
(one BatchGetItem) and the records they name (another). For a page, the keys of every message are collected
first and read together (≤ 100 keys per BatchGetItem, so a page of 100 messages costs a few requests instead
of 200), then each message is matched against that snapshot in page order (`engine.apply_matches`), and the
page's links are written together at the end, keyed, audited and idempotent like `pair_message`'s, in as few
transactions as fit (`store.write_links`: a few for a page instead of one per link).

Thread inheritance inside the page: a link written for a message is also added to the snapshot under the
message's thread markers (`store.thread_marker_keys`, the keys `write_link` updates in DynamoDB), so a reply
later in the same page inherits it exactly as if the parent had been paired in an earlier page.
"""
from __future__ import annotations

from typing import Sequence

from chalicelib.logs import logger
from chalicelib.models.directory import record_key
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.pairing import directory
from chalicelib.pairing.context import for_mailbox, get_mailbox, tenant_context
from chalicelib.pairing.engine import PairingResult, apply_matches, body_ticket_tags, link_dicts
from chalicelib.pairing.facts import message_facts
from chalicelib.pairing.matchers import Snapshot, contact_company_keys, index_keys, run_matchers
from chalicelib.pairing.store import LinkSpec, thread_marker_keys, write_links


def read_page_snapshot(tenant_id: str, keys: Sequence[str]) -> Snapshot:
    """Index entries for `keys` and the records they name (contacts' companies too), in batched reads."""
    snap = Snapshot(tenant_id)
    snap.index = directory.read_snapshot_items(list(dict.fromkeys(keys)))
    record_keys = set().union(*snap.index.values()) if snap.index else set()
    snap.records = directory.read_records(tenant_id, record_keys)
    missing = contact_company_keys(snap)
    if missing:
        snap.records.update(directory.read_records(tenant_id, missing))
    return snap


def _remember(snap: Snapshot, message: Message, specs: Sequence[LinkSpec]) -> None:
    """Make this message's links (written with the page's, after it) visible to replies later in the page."""
    keys = {record_key(spec.type, spec.id) for spec in specs}
    if not keys:
        return
    for marker in thread_marker_keys(message):
        snap.index.setdefault(marker, set()).update(keys)
    unknown = [key for key in keys if key not in snap.records]
    if unknown:
        snap.records.update(directory.read_records(message.tenant_id, unknown))


def pair_page(messages: Sequence[Message], mailbox: Mailbox | None = None) -> dict[str, PairingResult | None]:
    """Pair each message (all of one mailbox) per the mailbox's mode; message id → its result, or None when
    pairing that message failed (logged; the caller keeps its debt for a retry). `message.paired` is NOT
    emitted here: the caller announces the page's new links together (`sync/effects.complete_page`)."""
    if not messages:
        return {}
    first = messages[0]
    if mailbox is None or mailbox.mailbox_id != first.mailbox_id or mailbox.tenant_id != first.tenant_id:
        mailbox = get_mailbox(first.tenant_id, first.mailbox_id)
    mode = (mailbox.pairing_mode if mailbox is not None else "off") or "auto"
    results: dict[str, PairingResult | None] = {}
    if mode not in ("auto", "signal"):
        return {m.message_id: PairingResult(m.message_id, mode, skipped="pairing off") for m in messages}
    context = for_mailbox(tenant_context(first.tenant_id), mailbox)
    todo, keys = [], []
    for message in messages:
        result = PairingResult(message.message_id, mode)
        facts = message_facts(message, context.settings, context.own_addresses)
        if facts.internal or facts.blocked:
            result.skipped = "internal mail" if facts.internal else "blocklisted"
            results[message.message_id] = result
            continue
        body_tags = body_ticket_tags(message, facts, context)
        keys += index_keys(facts, context.settings, body_tags)
        todo.append((message, facts, body_tags, result))
    snap = read_page_snapshot(first.tenant_id, keys) if todo else Snapshot(first.tenant_id)
    deferred: list[tuple[Message, LinkSpec]] = []
    for message, facts, body_tags, result in todo:
        try:
            matches = run_matchers(facts, snap, context.settings, body_tags)
            planned = len(deferred)
            results[message.message_id] = apply_matches(message, facts, matches, context, result, announce=False,
                                                        deferred=deferred)
            _remember(snap, message, [spec for _, spec in deferred[planned:]])
        except Exception:  # noqa: BLE001 - the message keeps its debt; the replay or the sweep pairs it
            logger.exception("pairing failed; kept for retry", extra={"message_id": message.message_id})
            results[message.message_id] = None
    _write(deferred, results)
    return results


def _write(deferred: list[tuple[Message, LinkSpec]], results: dict[str, PairingResult | None]) -> None:
    """The page's links in as few transactions as fit (`store.write_links`); each result gets the links that
    were new. If the writes fail, every message that had links to write is marked failed (kept for retry)."""
    try:
        written = write_links(deferred, require_record=True)
    except Exception:  # noqa: BLE001 - as above: the debts stay, the replay writes what is missing
        logger.exception("writing a page's links failed; kept for retry", extra={"links": len(deferred)})
        for message, _ in deferred:
            results[message.message_id] = None
        return
    new: dict[str, list] = {}
    for (message, _), link in zip(deferred, written):
        if link is not None:
            new.setdefault(message.message_id, []).append(link)
    for message_id, links in new.items():
        result = results.get(message_id)
        if result is not None:
            result.links = link_dicts(links)
