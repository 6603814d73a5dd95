"""Gmail as a `MailProvider` + `PushSubscriber` (Gmail API "Synchronize clients" and "Push notifications"
guides, developers.google.com/gmail/api/guides/sync and …/push).

Folders are labels: "inbox" = INBOX, "sent" = SENT; a named folder (`sync_folders`) is a label given by id or
name (users.labels.list; none → NOT_FOUND, a per-folder error). provider_id = the Gmail message id (stable for
the life of the message, the same in every label).

Cursor (opaque to the engine), per folder:
- `l:<historyId>:<pageToken>` — an initial import in progress: `messages.list` (`labelIds=[L]`,
  `q=after:<epoch of import_since>`) continues at `pageToken`; `historyId` was read from `users.getProfile`
  BEFORE the listing started, so every change during the import is replayed afterwards (the store dedupes).
  One read serves every folder a provider starts (`_start_history_id`): an earlier historyId only replays more
  ("Partial synchronization", developers.google.com/gmail/api/guides/sync); a history 404 drops it.
- `h:<historyId>` — incremental: `history.list(startHistoryId, labelId=L)`; an idle mailbox costs exactly ONE
  call per label (no history records; the answer's `historyId` becomes the cursor).
- `h:<historyId>:<pageToken>` — the same history walk continuing at `pageToken`.
A 404 on `history.list` (startHistoryId older than the retained history, typically about a week) raises
CURSOR_INVALID: the engine resets the cursor and re-lists (bounded resync, no duplicates).

History records → ChangeSet: `messagesAdded` carrying L → `new`; `labelsAdded` with L, or `labelsRemoved`
TRASH/SPAM of a message carrying L (taken out of the trash, "not spam") → `changed` (the engine fetches only ids
it has not stored and restores stored ones it had marked removed); `messagesDeleted` → `removed`
(removed_at_source); a label change that leaves a message of L in TRASH or SPAM (`labelsAdded` TRASH, or
`labelsRemoved` L with TRASH present) → `removed`; L removed otherwise (archived) → nothing: the message still
exists and stays — and is followed no further: `history.list` with `labelId` returns "only messages with a label
matching the ID" (developers.google.com/gmail/api/reference/rest/v1/users.history/list), so its later trash or
deletion is not seen (the documented limit in docs/api.md: following it needs the whole mailbox's history).
Mail to self (INBOX and SENT on one message) belongs to "sent" only (`_in_folder`; the inbox listing asks
`-in:sent`); a folder added or dropped later meets it stored under the other role, which the store
takes as the same message (`also_in`), never a second one.
Read state: `UNREAD` in a `labelsAdded`/`labelsRemoved` entry → `flags` (seen False/True, the last change
wins; `historyTypes` includes labelAdded/labelRemoved for it); a fetched message's `labelIds` give its state.

Fetch: several refs are sized first (`format=minimal`: an oversize one is skipped, not downloaded), then
`messages.get(format=raw)` in batches of ≤50 and ≤ `RAW_BATCH_BYTES`; a part's 404 → `FetchedMessage(vanished=True)`.
Send: `messages.send` with `{"raw": base64url(MIME), "threadId"}` (Gmail files a reply into the thread only
with threadId AND matching In-Reply-To/References/Subject, which the caller's MIME carries).
Push: `users.watch` (INBOX, SENT) to the mail server's Pub/Sub topic; renewal = watch again ("You must re-call
watch at least every 7 days or else you will stop receiving updates for the user. We recommend calling watch
once per day": developers.google.com/gmail/api/guides/push): the hourly renewer re-watches once a day
(sync/push.py); `users.stop`.
"""
from __future__ import annotations

import base64
import dataclasses
from datetime import date, datetime, time as dtime, timezone
from typing import Iterator, Sequence

from chalicelib.budget import batches_within
from chalicelib.providers.base import (ChangeSet, ErrorCode, FetchedMessage, MailProvider, MessageRef,
                                       OAuthContext, ProviderError, PushState, PushSubscriber, SendResult,
                                       ThreadHint)
from chalicelib.providers.gmail.client import GmailClient

LABELS = {"inbox": "INBOX", "sent": "SENT"}
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
GONE_LABELS = frozenset({"TRASH", "SPAM"})
UNREAD = "UNREAD"
MAX_PAGE = 500
RAW_BATCH_BYTES = 16 * 1024 * 1024     # estimated raw bytes per messages.get format=raw batch (see `fetch`)


def after_query(since: date) -> str:
    """Gmail search `after:` with epoch seconds (midnight UTC of `since`), unambiguous across time zones."""
    return f"after:{int(datetime.combine(since, dtime(0), tzinfo=timezone.utc).timestamp())}"


def seen_of(message: dict) -> bool | None:
    """Read at the source: Gmail marks unread mail with the system label `UNREAD` (users.labels guide);
    None when the answer carries no labelIds."""
    labels = message.get("labelIds")
    return None if labels is None else UNREAD not in labels


def also_in(folder: str, message: dict) -> tuple[str, ...]:
    """The other role folders holding this very message (`MessageRef.also_in`): a Gmail message is one message
    whatever its labels — mail to self carries INBOX and SENT ("Manage labels",
    developers.google.com/gmail/api/guides/labels) — so the inbox and Sent see the same id and the same bytes.
    Only between roles: a named label's folder keeps its own copy (docs/api.md, "Folders synced")."""
    if folder not in LABELS:
        return ()
    labels = set(message.get("labelIds") or ())
    return tuple(role for role, label in LABELS.items() if role != folder and label in labels)


def parse_cursor(cursor: str) -> tuple[str, str, str | None]:
    """(mode "l"|"h", historyId, pageToken or None); PERMANENT for a cursor this provider never wrote."""
    parts = cursor.split(":", 2)
    if len(parts) < 2 or parts[0] not in ("l", "h") or not parts[1].isdigit():
        raise ProviderError(ErrorCode.CURSOR_INVALID, f"not a gmail cursor: {cursor[:40]!r}")
    return parts[0], parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


class GmailProvider(MailProvider, PushSubscriber):
    kind = "gmail"

    def __init__(self, context: OAuthContext, client: GmailClient | None = None):
        if context.tokens is None and client is None:
            raise ProviderError(ErrorCode.PERMANENT, "gmail provider needs a token source")
        self.context = context
        self.settings = dict(context.settings)
        self.client = client or GmailClient(context.tokens, api_root=self.settings["api_root"],
                                            timeout=context.timeout, sleep=context.sleep)
        self._labels: list[dict] | None = None
        self._history_start: str | None = None

    # ---- MailProvider -----------------------------------------------------------------------------------
    def folders(self) -> list[str]:
        return list(LABELS)

    def _label(self, folder: str) -> str:
        """The label id of a role ("inbox" → INBOX, "sent" → SENT) or of a named folder (`sync_folders`: a
        label id, else a label name, case-insensitively — users.labels.list, read once per provider)."""
        if folder in LABELS:
            return LABELS[folder]
        if self._labels is None:
            self._labels = self.client.list_labels()
        for label in self._labels:
            if label.get("id") == folder:
                return folder
        for label in self._labels:
            if str(label.get("name") or "").casefold() == folder.casefold():
                return str(label["id"])
        raise ProviderError(ErrorCode.NOT_FOUND, f"gmail has no label {folder!r}")

    def _in_folder(self, label: str, labels) -> bool:
        """Whether a message with `labels` belongs to the folder of `label`: it carries the label, is neither in
        TRASH nor SPAM, and — for the inbox, while "sent" is synced too (`settings["sent_synced"]`) — is not
        also SENT: mail to self is ONE Gmail message with both labels
        (developers.google.com/gmail/api/guides/labels), stored once, in "sent" (outbound)."""
        labels = set(labels)
        return label in labels and not GONE_LABELS & labels and not (label == "INBOX" and self._sent_owns(labels))

    def _sent_owns(self, labels: set[str]) -> bool:
        return "SENT" in labels and bool(self.settings.get("sent_synced", True))

    def changes(self, folder: str, cursor: str | None, *, since: date, page_size: int) -> ChangeSet:
        label = self._label(folder)
        size = max(1, min(page_size, MAX_PAGE))
        calls_before = self.client.calls
        if cursor is None:
            history_id = self._start_history_id()
            change_set = self._list(folder, label, history_id, None, since, size, cursor)
        else:
            mode, history_id, token = parse_cursor(cursor)
            if mode == "l":
                change_set = self._list(folder, label, history_id, token, since, size, cursor)
            else:
                change_set = self._history(folder, label, history_id, token, size, cursor)
        return dataclasses.replace(change_set, round_trips=self.client.calls - calls_before)

    def _start_history_id(self) -> str:
        """The historyId a folder's initial listing starts from: `users.getProfile` read once per provider (a
        job), before the first listing — so it precedes every listing that uses it, and each folder's history
        walk afterwards replays every change made while any of them was listed (the store dedupes). Dropped
        when a history walk answers 404 (history no longer retained), so a resync reads a fresh one."""
        if self._history_start is None:
            self._history_start = str(self.client.get_profile()["historyId"])
        return self._history_start

    def _list(self, folder: str, label: str, history_id: str, token: str | None, since: date, size: int,
              cursor: str | None) -> ChangeSet:
        owned_by_sent = label == "INBOX" and self._sent_owns({"SENT"})          # mail to self: see `_in_folder`
        query = after_query(since) + (" -in:sent" if owned_by_sent else "")
        answer = self.client.list_messages(label=label, query=query, page_token=token, max_results=size)
        refs = tuple(MessageRef(folder, m["id"], thread_id=m.get("threadId")) for m in answer.get("messages") or [])
        following = answer.get("nextPageToken")
        next_cursor = f"l:{history_id}:{following}" if following else f"h:{history_id}"
        return ChangeSet(folder=folder, new=refs, removed=(), previous_cursor=cursor, next_cursor=next_cursor,
                         has_more=bool(following))

    def _history(self, folder: str, label: str, history_id: str, token: str | None, size: int,
                 cursor: str | None) -> ChangeSet:
        try:
            answer = self.client.list_history(start_history_id=history_id, label=label,
                                              history_types=HISTORY_TYPES, page_token=token, max_results=size)
        except ProviderError as exc:
            if exc.code == ErrorCode.CURSOR_INVALID:
                self._history_start = None          # may be as old as the cursor Google no longer has
            raise
        new: dict[str, MessageRef] = {}
        changed: dict[str, MessageRef] = {}
        removed: dict[str, None] = {}
        flags: dict[str, MessageRef] = {}
        for record in answer.get("history") or []:     # in history order: a later read-state change wins
            for key, seen in (("labelsAdded", False), ("labelsRemoved", True)):
                for entry in record.get(key) or []:
                    message = entry.get("message") or {}
                    if UNREAD in (entry.get("labelIds") or []) and message.get("id"):
                        flags[message["id"]] = MessageRef(folder, message["id"], thread_id=message.get("threadId"),
                                                          seen=seen)
            for entry in record.get("messagesAdded") or []:
                message = entry.get("message") or {}
                if message.get("id") and self._in_folder(label, message.get("labelIds") or []):
                    new[message["id"]] = MessageRef(folder, message["id"], thread_id=message.get("threadId"))
                    removed.pop(message["id"], None)
            for key in ("labelsAdded", "labelsRemoved"):
                for entry in record.get(key) or []:
                    message = entry.get("message") or {}
                    if not message.get("id"):
                        continue
                    labels, moved = set(message.get("labelIds") or []), set(entry.get("labelIds") or [])
                    if GONE_LABELS & labels and (label in labels or label in moved):
                        removed[message["id"]] = None             # trashed or spam, whichever label moved
                        changed.pop(message["id"], None)
                    elif (label in moved or GONE_LABELS & moved) and self._in_folder(label, labels):
                        if message["id"] not in new:              # into the folder, or out of trash/spam
                            changed[message["id"]] = MessageRef(folder, message["id"],
                                                                thread_id=message.get("threadId"))
                        removed.pop(message["id"], None)
            for entry in record.get("messagesDeleted") or []:
                message_id = (entry.get("message") or {}).get("id")
                if message_id:
                    removed[message_id] = None
        for message_id in removed:
            new.pop(message_id, None)
            changed.pop(message_id, None)
            flags.pop(message_id, None)
        for message_id in new:             # fetched now: its labels (read state) come with it
            flags.pop(message_id, None)
        for message_id, ref in changed.items():
            if message_id in flags:
                changed[message_id] = dataclasses.replace(ref, seen=flags.pop(message_id).seen)
        following = answer.get("nextPageToken")
        latest = str(answer.get("historyId") or history_id)
        next_cursor = f"h:{history_id}:{following}" if following else f"h:{max(int(latest), int(history_id))}"
        return ChangeSet(folder=folder, new=tuple(new.values()), removed=tuple(removed), previous_cursor=cursor,
                         next_cursor=next_cursor, changed=tuple(changed.values()), flags=tuple(flags.values()),
                         has_more=bool(following))

    def fetch(self, refs: Sequence[MessageRef], *, max_bytes: int) -> Iterator[FetchedMessage]:
        """Bodies (`format=raw`) in batches. A batch answer is read whole into memory (googleapiclient, and
        base64 adds a third), and Gmail takes messages of up to 50 MB (support.google.com/mail/answer/6584), so
        several refs are first sized (`get_minimal`: format=minimal, `sizeEstimate`): one over `max_bytes` is
        skipped without being downloaded (docs/operations.md), and the rest go in batches of at most
        `RAW_BATCH_BYTES` (a larger message alone). A single ref is fetched directly (one body is bounded)."""
        by_id = {ref.provider_id: ref for ref in refs}
        minimal = self.client.get_minimal(list(by_id)) if len(by_id) > 1 else {}
        sizes = {message_id: int(answer.get("sizeEstimate") or 0) for message_id, answer in minimal.items() if answer}
        wanted: list[str] = []
        for message_id, ref in by_id.items():
            if message_id in minimal and minimal[message_id] is None:
                yield FetchedMessage(ref, None, vanished=True)
                continue
            size = sizes.get(message_id) or 0
            if size > max_bytes:
                yield FetchedMessage(dataclasses.replace(ref, also_in=also_in(ref.folder, minimal[message_id])), None,
                                     skipped_reason=f"size {size} exceeds limit {max_bytes}")
                continue
            wanted.append(message_id)
        for group in batches_within(wanted, lambda message_id: sizes.get(message_id) or 0, RAW_BATCH_BYTES):
            yield from self._fetch_raw(group, by_id, max_bytes)

    def _fetch_raw(self, ids: list[str], by_id: dict[str, MessageRef], max_bytes: int) -> Iterator[FetchedMessage]:
        for message_id, answer in self.client.get_raw_batch(ids):
            ref = by_id[message_id]
            if answer is None:
                yield FetchedMessage(ref, None, vanished=True)
                continue
            raw = base64.urlsafe_b64decode(answer.get("raw", "") + "=" * (-len(answer.get("raw", "")) % 4))
            if len(raw) > max_bytes:
                yield FetchedMessage(dataclasses.replace(ref, also_in=also_in(ref.folder, answer)), None,
                                     skipped_reason=f"size {len(raw)} exceeds limit {max_bytes}")
                continue
            yield FetchedMessage(dataclasses.replace(ref, seen=seen_of(answer), also_in=also_in(ref.folder, answer)),
                                 raw)

    def test_connection(self) -> None:
        address = str(self.client.get_profile().get("emailAddress") or "")
        if address.lower() != self.context.email.lower():
            raise ProviderError(ErrorCode.PERMANENT, "the Google account is not the mailbox's address")

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str],
             thread: ThreadHint | None = None) -> SendResult:
        body = {"raw": base64.urlsafe_b64encode(raw).decode()}
        if thread is not None and thread.provider_thread_id:
            body["threadId"] = thread.provider_thread_id
        answer = self.client.send(body)
        return SendResult(answer.get("id"), thread_id=answer.get("threadId"))

    def has_sent_copy(self, rfc_message_id: str) -> bool | None:
        """Whether the SENT label holds a message with this Message-ID (`rfc822msgid:` search): Gmail labels
        what `messages.send` accepted SENT itself."""
        return bool(self.client.find_by_message_id("SENT", rfc_message_id))

    # ---- PushSubscriber ---------------------------------------------------------------------------------
    def push_configured(self) -> bool:
        """Push is optional: a mail server without `push.topic` has no Pub/Sub topic for `users.watch`."""
        return bool((self.settings.get("push") or {}).get("topic"))

    def start_push(self) -> PushState:
        topic = (self.settings.get("push") or {}).get("topic")
        if not topic:
            raise ProviderError(ErrorCode.PERMANENT, "the mail server has no Pub/Sub topic (push.topic)")
        answer = self.client.watch({"topicName": topic, "labelIds": list(LABELS.values()),
                                    "labelFilterBehavior": "include"})
        expires = datetime.fromtimestamp(int(answer["expiration"]) / 1000, tz=timezone.utc)
        return PushState(expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         resource={"kind": "gmail", "topic": topic, "email": self.context.email.lower(),
                                   "history_id": str(answer.get("historyId") or "")})

    def renew_push(self, state: PushState) -> PushState:
        return self.start_push()

    def stop_push(self, state: PushState) -> None:
        self.client.stop()
