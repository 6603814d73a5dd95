"""`ImapProvider`: the IMAP/SMTP implementation of `MailProvider` (docs/architecture.md).

Syncs "inbox" (INBOX) and "sent" (the \\Sent special-use mailbox, or a common name), and named folders
(`sync_folders`: the mailbox of that exact name in LIST; none → NOT_FOUND, a per-folder error). Never changes the
server: folders are EXAMINEd, bodies fetched with BODY.PEEK[] (\\Seen stays unset), nothing is moved,
flagged or deleted. The one write: the outbox APPENDs the copy of a message it sent to Sent
(`append_sent_copy`, per-mailbox setting `append_sent`).

changes() per folder, with the cursor described in `cursor.py`:
- idle: ONE `STATUS (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])`; unchanged UIDNEXT and MESSAGES mean
  nothing was added or expunged → the same cursor back, no SELECT, no FETCH.
- changed: EXAMINE; `UID SEARCH RETURN (COUNT) UID 1:last` — fewer than `below` means expunges, found with
  `UID SEARCH UID 1:last` diffed against the known UIDs (→ `removed`); new = `UID SEARCH UID last+1:*`
  filtered to UIDs > last. At most `page_size` refs per ChangeSet (`has_more` when more).
- initial (cursor None): `UID SEARCH UID 1:<UIDNEXT-1> SINCE <since>` pages through the existing mail
  (INTERNALDATE on/after the import date), then continues with mail that arrived meanwhile.
- UIDVALIDITY changed → ProviderError(CURSOR_INVALID); the engine resyncs from `since` (store dedupes).
- read state: FLAGS are fetched with each message (`\\Seen`, RFC 3501 §2.3.2 → `MessageRef.seen`). With
  CONDSTORE (RFC 7162) the cursor keeps HIGHESTMODSEQ; when STATUS shows it moved, the folder is EXAMINEd and
  `UID FETCH 1:last (UID FLAGS) (CHANGEDSINCE <modseq>)` reports the listed messages whose flags changed
  (`ChangeSet.flags`). Without CONDSTORE the read state stays the one fetched at import.
`ChangeSet.round_trips` counts the IMAP commands the call issued (the login of a fresh connection excluded).
provider_id = "<uidvalidity>:<uid>".
"""
from __future__ import annotations

import ssl
from dataclasses import replace
from datetime import date
from typing import Iterator, Sequence

from chalicelib.logs import logger
from chalicelib.providers.base import (ChangeSet, ErrorCode, FetchedMessage, MailProvider, MessageRef,
                                       ProviderError, SendResult, ThreadHint)
from chalicelib.providers.imap import cursor as cursors
from chalicelib.providers.imap.client import ImapClient, default_ssl_context
from chalicelib.providers.imap.context import ImapContext
from chalicelib.providers.imap.cursor import FolderCursor
from chalicelib.providers.imap.folders import LOGICAL_FOLDERS, find_named, find_sent
from chalicelib.providers.imap.smtp import SmtpSession

FETCH_BATCH = 50                      # UIDs per UID FETCH
FETCH_BATCH_BYTES = 16 * 1024 * 1024  # body bytes per UID FETCH (bounded memory)


class ImapProvider(MailProvider):
    kind = "imap"

    def __init__(self, context: ImapContext, *, ssl_context: ssl.SSLContext | None = None):
        if context.imap is None:
            raise ProviderError(ErrorCode.PERMANENT, "mailbox has no IMAP settings")
        self.context = context
        self.ssl_context = ssl_context or default_ssl_context()
        self.client = ImapClient(context.imap, context.secrets.get("password", ""), timeout=context.timeout,
                                 ssl_context=self.ssl_context)
        self._mailboxes: dict[str, tuple[str, int]] = {}  # logical folder → (server name, UIDVALIDITY)

    # ---- MailProvider ---------------------------------------------------------------------------------------

    def folders(self) -> list[str]:
        return list(LOGICAL_FOLDERS)

    def changes(self, folder: str, cursor: str | None, *, since: date, page_size: int) -> ChangeSet:
        self.client.connect()
        start = self.client.round_trips
        if cursor is None:
            result = self._initial(folder, since, page_size)
        else:
            try:
                state = cursors.decode(cursor)
            except cursors.CursorError as exc:
                raise ProviderError(ErrorCode.CURSOR_INVALID, f"{folder}: {exc}") from None
            result = self._incremental(folder, cursor, state, since, page_size)
        return replace(result, round_trips=self.client.round_trips - start)

    def fetch(self, refs: Sequence[MessageRef], *, max_bytes: int) -> Iterator[FetchedMessage]:
        index = 0
        while index < len(refs):
            folder = refs[index].folder
            end = index
            while end < len(refs) and refs[end].folder == folder:
                end += 1
            yield from self._fetch_folder(folder, refs[index:end], max_bytes)
            index = end

    def test_connection(self) -> None:
        self.client.connect()
        self.client.examine("INBOX")
        if self.context.smtp is not None:
            self._smtp().check_login()

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str],
             thread: ThreadHint | None = None) -> SendResult:
        """SMTP submission; threading lives in the raw MIME's In-Reply-To/References (RFC 5322 §3.6.4)."""
        if self.context.smtp is None:
            raise ProviderError(ErrorCode.PERMANENT, "mailbox has no SMTP settings")
        message_id = self._smtp().send(raw, sender=sender, recipients=recipients)
        return SendResult(provider_message_id=message_id)

    def append_sent_copy(self, raw: bytes) -> bool:
        """APPEND the message just submitted to the Sent folder (SPECIAL-USE \\Sent, RFC 6154; else a common
        name), flagged \\Seen. The very bytes sent, so the next sync finds the same content. False when the
        server has no Sent folder."""
        name = find_sent(self.client.list_folders())
        if name is None:
            return False
        self.client.append(name, raw)
        return True

    def has_sent_copy(self, rfc_message_id: str) -> bool | None:
        """Whether Sent holds a message with this Message-ID (None: no Sent folder, cannot tell)."""
        name = find_sent(self.client.list_folders())
        if name is None:
            return None
        return self.client.search_message_id(name, rfc_message_id)

    def close(self) -> None:
        self.client.close()

    # ---- changes ------------------------------------------------------------------------------------------

    def _resolve(self, folder: str) -> str | None:
        """The server's mailbox for a logical folder ("inbox", "sent") or a named one (`sync_folders`: the
        exact mailbox name in LIST)."""
        if folder == "inbox":
            return "INBOX"
        if folder == "sent":
            return find_sent(self.client.list_folders())
        return find_named(self.client.list_folders(), folder)

    def _initial(self, folder: str, since: date, page_size: int) -> ChangeSet:
        name = self._resolve(folder)
        if name is None and folder not in LOGICAL_FOLDERS:
            raise ProviderError(ErrorCode.NOT_FOUND, f"{folder}: no such folder on the server")
        if name is None:
            logger.info("no such folder on the server yet", extra={"folder": folder})
            return ChangeSet(folder=folder, new=(), removed=(), previous_cursor=None,
                             next_cursor=cursors.encode(FolderCursor(mailbox=None)))
        info = self.client.examine(name)
        uidnext = info.get("UIDNEXT") or 1
        start = FolderCursor(mailbox=name, uidvalidity=info["UIDVALIDITY"], boundary=uidnext - 1)
        return self._scan(folder, name, info, start, None, since, page_size)

    def _incremental(self, folder: str, raw_cursor: str, state: FolderCursor, since: date,
                     page_size: int) -> ChangeSet:
        if state.mailbox is None:  # the server had no such folder last time: look again
            if self._resolve(folder) is None:
                return ChangeSet(folder=folder, new=(), removed=(), previous_cursor=raw_cursor,
                                 next_cursor=raw_cursor)
            return replace(self._initial(folder, since, page_size), previous_cursor=raw_cursor)
        name = state.mailbox
        if not state.pending:
            try:
                status = self.client.status(name)
            except ProviderError as exc:
                if exc.code is ErrorCode.NOT_FOUND and folder != "inbox":
                    raise ProviderError(ErrorCode.CURSOR_INVALID, f"{folder}: mailbox {name!r} is gone") from None
                raise
            self._check_validity(folder, state, status["UIDVALIDITY"])
            same_flags = state.modseq is None or status.get("HIGHESTMODSEQ") in (None, state.modseq)
            if status["UIDNEXT"] == state.uidnext and status["MESSAGES"] == state.messages and same_flags:
                self._mailboxes[folder] = (name, state.uidvalidity)
                return ChangeSet(folder=folder, new=(), removed=(), previous_cursor=raw_cursor,
                                 next_cursor=raw_cursor)
        info = self.client.examine(name)
        self._check_validity(folder, state, info["UIDVALIDITY"])
        return self._scan(folder, name, info, state, raw_cursor, since, page_size)

    def _check_validity(self, folder: str, state: FolderCursor, uidvalidity: int) -> None:
        if uidvalidity != state.uidvalidity:
            raise ProviderError(ErrorCode.CURSOR_INVALID,
                                f"{folder}: UIDVALIDITY changed ({state.uidvalidity} → {uidvalidity})")

    def _scan(self, folder: str, name: str, info: dict[str, int], state: FolderCursor,
              raw_cursor: str | None, since: date, page_size: int) -> ChangeSet:
        """The selected folder against `state`: expunged known UIDs, then the next page of new UIDs."""
        client, last = self.client, state.last_uid
        uidvalidity = state.uidvalidity
        self._mailboxes[folder] = (name, uidvalidity)
        known = set(state.known)
        removed: list[int] = []
        below = 0
        if last > 0:
            below = client.count_uid_range(1, last)
            if below != state.below:
                present = {u for u in client.search_uid_range(1, last) if u <= last}
                removed = sorted(known - present)
                known -= set(removed)
                below = len(present)

        flags = self._changed_flags(folder, info, state, known)

        candidates: list[int] = []
        searched_high = True
        boundary = state.boundary
        if boundary is not None and last < boundary:
            candidates = [u for u in client.search_uid_range(last + 1, boundary, since=since)
                          if last < u <= boundary]
            searched_high = len(candidates) <= page_size
        high: list[int] = []
        if searched_high:
            first = max(last, boundary or 0) + 1
            high = [u for u in client.search_uid_range(first) if u >= first]
            candidates += high
        page, has_more = candidates[:page_size], len(candidates) > page_size

        uidnext = max(info.get("UIDNEXT") or 1, (high[-1] + 1) if high else 1, state.uidnext)
        if has_more:
            new_last = page[-1]
            if boundary is not None and new_last >= boundary:
                boundary = None
            # Server messages with UID in (last, new_last]: the initial import also passes over older ones.
            added_below = (client.count_uid_range(last + 1, new_last) if state.boundary is not None
                           else sum(1 for u in high if u <= new_last))
        else:
            new_last = max(last, boundary or 0, uidnext - 1)
            boundary = None
            added_below = (client.count_uid_range(last + 1, new_last) if new_last > last and state.boundary
                           is not None else len(high))
        below += added_below
        known.update(page)
        next_state = FolderCursor(mailbox=name, uidvalidity=uidvalidity, last_uid=new_last, uidnext=uidnext,
                                  messages=below, below=below, known=tuple(sorted(known)), boundary=boundary,
                                  modseq=info.get("HIGHESTMODSEQ"))
        refs = tuple(MessageRef(folder=folder, provider_id=f"{uidvalidity}:{uid}") for uid in page)
        return ChangeSet(folder=folder, new=refs, removed=tuple(f"{uidvalidity}:{uid}" for uid in removed),
                         previous_cursor=raw_cursor, next_cursor=cursors.encode(next_state), has_more=has_more,
                         flags=flags)

    def _changed_flags(self, folder: str, info: dict[str, int], state: FolderCursor,
                       known: set[int]) -> tuple[MessageRef, ...]:
        """Read-state changes of listed messages since the cursor's modseq (RFC 7162 CONDSTORE: one
        `UID FETCH 1:last (UID FLAGS) (CHANGEDSINCE modseq)` when HIGHESTMODSEQ moved), as refs with `seen`.
        Without CONDSTORE (no modseq) nothing: the read state stays the one fetched at import."""
        highest = info.get("HIGHESTMODSEQ")
        if (state.modseq is None or highest is None or highest == state.modseq or not known
                or not self.client.has("CONDSTORE")):
            return ()
        changed = self.client.changed_flags(1, state.last_uid, state.modseq)
        return tuple(MessageRef(folder=folder, provider_id=f"{state.uidvalidity}:{uid}",
                                seen=any(flag.lower() == "\\seen" for flag in flags))
                     for uid, flags in sorted(changed.items()) if uid in known)

    # ---- fetch --------------------------------------------------------------------------------------------

    def _fetch_folder(self, folder: str, refs: Sequence[MessageRef], max_bytes: int) -> Iterator[FetchedMessage]:
        self.client.connect()
        if folder in self._mailboxes:
            name, uidvalidity = self._mailboxes[folder]
        else:
            resolved = self._resolve(folder)
            if resolved is None:
                raise ProviderError(ErrorCode.NOT_FOUND, f"{folder}: no such folder on the server")
            name, uidvalidity = resolved, 0
        if self.client.selected != name or not uidvalidity:
            uidvalidity = self.client.examine(name)["UIDVALIDITY"]
            self._mailboxes[folder] = (name, uidvalidity)
        uids: list[int] = []
        for ref in refs:
            ref_validity, _, uid = ref.provider_id.partition(":")
            if not uid.isdigit() or not ref_validity.isdigit():
                raise ProviderError(ErrorCode.NOT_FOUND, f"{folder}: malformed provider id {ref.provider_id!r}")
            if int(ref_validity) != uidvalidity:
                # TEMPORARY, not CURSOR_INVALID: the engine resyncs on the next changes(), which sees the change.
                raise ProviderError(ErrorCode.TEMPORARY, f"{folder}: UIDVALIDITY changed since listing")
            uids.append(int(uid))
        for start in range(0, len(refs), FETCH_BATCH):
            yield from self._fetch_batch(refs[start:start + FETCH_BATCH], uids[start:start + FETCH_BATCH],
                                         max_bytes)

    def _fetch_batch(self, refs: Sequence[MessageRef], uids: list[int], max_bytes: int
                     ) -> Iterator[FetchedMessage]:
        meta = self.client.fetch(uids, ["RFC822.SIZE", "INTERNALDATE", "FLAGS"])
        sizes = {uid: int(meta[uid][b"RFC822.SIZE"]) for uid in uids if uid in meta}
        seen = {uid: any(_flag(f) == "\\seen" for f in meta[uid].get(b"FLAGS", ())) for uid in uids if uid in meta}
        wanted = [uid for uid in uids if uid in sizes and sizes[uid] <= max_bytes]
        bodies: dict[int, bytes] = {}
        pending = list(wanted)
        for ref, uid in zip(refs, uids):
            if uid not in sizes:
                raise ProviderError(ErrorCode.NOT_FOUND, f"{ref.folder}: message {ref.provider_id} is gone")
            sized = replace(ref, size=sizes[uid], seen=seen[uid])
            if sizes[uid] > max_bytes:
                yield FetchedMessage(ref=sized, raw=None,
                                     skipped_reason=f"size {sizes[uid]} exceeds limit {max_bytes}")
                continue
            if uid not in bodies:
                bodies.clear()
                group, total = [], 0
                while pending and (not group or total + sizes[pending[0]] <= FETCH_BATCH_BYTES):
                    total += sizes[pending[0]]
                    group.append(pending.pop(0))
                fetched = self.client.fetch(group, ["BODY.PEEK[]"])
                bodies = {u: d.get(b"BODY[]") for u, d in fetched.items() if d.get(b"BODY[]") is not None}
                if uid not in bodies:
                    raise ProviderError(ErrorCode.NOT_FOUND, f"{ref.folder}: message {ref.provider_id} is gone")
            yield FetchedMessage(ref=sized, raw=bytes(bodies.pop(uid)))

    # ---- smtp -------------------------------------------------------------------------------------------------

    def _smtp(self) -> SmtpSession:
        assert self.context.smtp is not None
        secrets = self.context.secrets
        password = secrets.get("smtp_password") or secrets.get("password", "")
        domain = self.context.email.rpartition("@")[2] or "localhost"
        return SmtpSession(self.context.smtp, password, ehlo_name=domain, timeout=self.context.timeout,
                           ssl_context=self.ssl_context)


def _flag(value) -> str:
    return (value.decode(errors="replace") if isinstance(value, bytes) else str(value)).lower()
