"""Microsoft 365 mailboxes through Microsoft Graph: delta sync per folder, MIME fetch, send, subscriptions.

Sync (learn.microsoft.com "Get incremental changes to messages in a folder", "message: delta"):
- folders: Graph's well-known `inbox` and `sentitems`, stored as the logical "inbox" and "sent"; a named
  folder (`sync_folders`) is a well-known name (`archive`, …) or a top-level folder's display name, resolved
  through `GET /me/mailFolders` (none → NOT_FOUND, a per-folder error).
- a round starts at `/me/mailFolders/{folder}/messages/delta` (first round: `$filter=receivedDateTime ge
  <import_since>`), pages by `Prefer: odata.maxpagesize`, continues with `@odata.nextLink` (has_more) and ends
  with `@odata.deltaLink`, which is the cursor of the next round: an idle sync is ONE request per folder.
- cursor (opaque to the engine): "<phase> <link>", phase `i` while the first round runs (its messages are
  `new`), `d` afterwards (delta re-lists created AND changed messages alike, so they are `changed`: the engine
  fetches only the ones it has not stored). `@removed` entries are `removed`; an id a page gives twice counts
  once, in its last state (`_last_state`).
- read state: `isRead` is selected, so each listed message carries it (`MessageRef.seen`); a message whose
  `isRead` changed comes back in the next delta round and the engine records it for the stored copy.
- 410 / `syncStateNotFound` → CURSOR_INVALID (the engine resyncs from `import_since`; the store dedupes).
- messages are fetched as MIME (`GET /me/messages/{id}/$value`), up to 4 at once (the client's cap), streamed
  and never read past the size limit; a 404 for one message is `vanished`.
Send ("user: sendMail", "message: reply/replyAll/forward", MIME format): the raw message base64-encoded as a
`text/plain` body; 202 without an id (the sent copy is found by Message-ID on the next sync). Envelope
recipients missing from To/Cc/Bcc are added as Bcc (Graph takes recipients from the MIME headers).
"""
from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from email.utils import getaddresses
from typing import Iterator, Sequence
from urllib.parse import quote

import requests

from chalicelib.providers.base import (ChangeSet, ErrorCode, FetchedMessage, MailProvider, MessageRef, OAuthContext,
                                       ProviderError, PushState, PushSubscriber, SendResult, ThreadHint)
from chalicelib.providers.graph.client import MAX_CONCURRENT_PER_MAILBOX, GraphClient
from chalicelib.providers.graph.errors import network_error
from chalicelib.providers.graph.subscriptions import GraphSubscriptions

FOLDERS = {"inbox": "inbox", "sent": "sentitems"}
# mailFolder resource, "Use well-known folder names" (learn.microsoft.com/graph/api/resources/mailfolder).
WELL_KNOWN = frozenset({"archive", "clutter", "conflicts", "conversationhistory", "deleteditems", "drafts",
                        "inbox", "junkemail", "localfailures", "msgfolderroot", "outbox",
                        "recoverableitemsdeletions", "scheduled", "searchfolders", "sentitems", "serverfailures",
                        "syncissues"})
MAX_FOLDER_PAGES = 10
SELECT = "id,receivedDateTime,internetMessageId,conversationId,isRead"
REPLY_ACTIONS = {"reply": "reply", "reply_all": "replyAll", "forward": "forward"}
READ_CHUNK = 256 * 1024


def _with_bcc(raw: bytes, recipients: Sequence[str]) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    text = head.decode("utf-8", "replace")
    present = {addr.lower() for _, addr in getaddresses(
        [line.split(":", 1)[1] for line in text.replace("\r\n ", " ").replace("\r\n\t", " ").splitlines()
         if line.split(":", 1)[0].strip().lower() in {"to", "cc", "bcc"} and ":" in line])}
    missing = [r for r in recipients if r.lower() not in present]
    if not missing:
        return raw
    newline = "\r\n" if "\r\n" in text or not text else "\n"
    return (text + newline + "Bcc: " + ", ".join(missing)).encode() + sep + body


def _read_at_most(response: requests.Response, limit: int) -> bytes | None:
    """The body of a streamed response, or None (the rest unread) as soon as it passes `limit` bytes."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(chunk_size=READ_CHUNK):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise network_error(exc) from None
    return b"".join(chunks)


def _last_state(folder: str, items: Sequence[dict]) -> tuple[list[MessageRef], list[str]]:
    """A delta page as (listed refs, removed ids), one entry per id: the LAST state the page gives wins.
    "Use delta query to track changes in Microsoft Graph data" (learn.microsoft.com/graph/delta-query-overview)
    warns that the same resource can come back more than once (replays); for a message that came and went (or
    went and came back) within one page, only its last entry says whether it is in the folder — otherwise the
    engine would store it and then mark it removed (or the reverse). `isRead` is taken from the last entry."""
    state: dict[str, MessageRef | None] = {}
    for item in items:
        message_id = str(item["id"])
        state.pop(message_id, None)                   # re-inserted: the dict keeps the order of last entries
        if "@removed" in item:
            state[message_id] = None
        else:
            is_read = item.get("isRead")
            state[message_id] = MessageRef(folder, message_id, thread_id=item.get("conversationId"),
                                           seen=is_read if isinstance(is_read, bool) else None)
    return ([ref for ref in state.values() if ref is not None],
            [message_id for message_id, ref in state.items() if ref is None])


class GraphProvider(MailProvider, PushSubscriber):
    kind = "outlook"

    def __init__(self, context: OAuthContext, *, client: GraphClient | None = None):
        self.context = context
        settings = context.settings
        self.client = client or GraphClient(settings["graph_root"], context.tokens,
                                            mailbox_key=f"{context.tenant_id}/{context.mailbox_id}",
                                            timeout=context.timeout, sleep=context.sleep)
        self.subscriptions = GraphSubscriptions(self.client, folders=FOLDERS,
                                                notification_url=settings.get("notification_url", ""),
                                                lifecycle_url=settings.get("lifecycle_url", ""))
        self._named: dict[str, str] = {}

    # ---- sync ------------------------------------------------------------------------------------------
    def folders(self) -> list[str]:
        return list(FOLDERS)

    def folder_path(self, folder: str) -> str:
        """The `/me/mailFolders/{…}` segment of a role, of a named folder given by well-known name (`archive`),
        or of a top-level folder given by display name (case-insensitive; `GET /me/mailFolders`, read once per
        provider). None such → NOT_FOUND (a per-folder error)."""
        if folder in FOLDERS:
            return FOLDERS[folder]
        if folder.lower() in WELL_KNOWN:
            return folder.lower()
        if folder not in self._named:
            self._named[folder] = self._find_folder(folder)
        return self._named[folder]

    def _find_folder(self, name: str) -> str:
        link: str | None = "me/mailFolders"
        params: dict | None = {"$select": "id,displayName", "$top": "100"}
        for _ in range(MAX_FOLDER_PAGES):
            if link is None:
                break
            body = self.client.get_json(link, params=params, what="folders")
            for item in body.get("value") or []:
                if str(item.get("displayName") or "").casefold() == name.casefold() and item.get("id"):
                    return quote(str(item["id"]), safe="")
            link, params = body.get("@odata.nextLink"), None
        raise ProviderError(ErrorCode.NOT_FOUND, f"the mailbox has no mail folder {name!r}")

    def changes(self, folder: str, cursor: str | None, *, since: date, page_size: int) -> ChangeSet:
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        if cursor is None:
            phase = "i"
            body = self.client.get_json(f"me/mailFolders/{self.folder_path(folder)}/messages/delta", headers=headers,
                                        what="delta",
                                        params={"$select": SELECT,
                                                "$filter": f"receivedDateTime ge {since.isoformat()}T00:00:00Z"})
        else:
            phase, _, link = cursor.partition(" ")
            if phase not in {"i", "d"} or not link:
                raise ProviderError(ErrorCode.CURSOR_INVALID, "unreadable Graph cursor")
            body = self.client.get_json(link, headers=headers, what="delta")
        listed, removed = _last_state(folder, body.get("value") or [])
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if not (next_link or delta_link):
            raise ProviderError(ErrorCode.TEMPORARY, "Graph delta page without nextLink or deltaLink")
        next_cursor = f"{phase} {next_link}" if next_link else f"d {delta_link}"
        refs = tuple(listed)
        return ChangeSet(folder=folder, new=refs if phase == "i" else (), changed=refs if phase == "d" else (),
                         removed=tuple(removed), previous_cursor=cursor, next_cursor=next_cursor,
                         has_more=bool(next_link), round_trips=1)

    def _fetch_one(self, ref: MessageRef, max_bytes: int) -> FetchedMessage:
        """The MIME of one message, streamed and never read past `max_bytes` (Exchange Online takes messages
        of up to 150 MB: learn.microsoft.com "Exchange Online limits"): a declared `Content-Length` over the
        limit is skipped unread, an undeclared one is cut at the limit — a large message costs neither the
        transfer nor the worker's memory (docs/operations.md: "recorded as skipped, not downloaded")."""
        try:
            response = self.client.request("GET", f"me/messages/{ref.provider_id}/$value", what="message",
                                           headers={"Accept": "*/*"}, stream=True)
        except ProviderError as exc:
            if exc.code == ErrorCode.NOT_FOUND:
                return FetchedMessage(ref, None, vanished=True)
            raise
        with response:
            declared = str(response.headers.get("Content-Length") or "")
            if declared.isdigit() and int(declared) > max_bytes:
                return FetchedMessage(ref, None, skipped_reason=f"size {declared} exceeds limit {max_bytes}")
            raw = _read_at_most(response, max_bytes)
        if raw is None:
            return FetchedMessage(ref, None, skipped_reason=f"size over {max_bytes} exceeds limit {max_bytes}")
        return FetchedMessage(ref, raw)

    def fetch(self, refs: Sequence[MessageRef], *, max_bytes: int) -> Iterator[FetchedMessage]:
        if not refs:
            return
        with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_PER_MAILBOX, len(refs))) as pool:
            yield from pool.map(lambda ref: self._fetch_one(ref, max_bytes), refs)

    def test_connection(self) -> None:
        self.client.get_json("me", params={"$select": "mail,userPrincipalName"}, what="profile")

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str],
             thread: ThreadHint | None = None) -> SendResult:
        payload = base64.b64encode(_with_bcc(raw, recipients))
        action = REPLY_ACTIONS.get(thread.mode) if thread else None
        if action and thread.provider_message_id:
            path = f"me/messages/{thread.provider_message_id}/{action}"
        else:
            path = "me/sendMail"
        self.client.request("POST", path, data=payload, headers={"Content-Type": "text/plain"}, what="send")
        return SendResult(None)

    def has_sent_copy(self, rfc_message_id: str) -> bool | None:
        """Whether Sent Items holds a message with this Message-ID: `$filter=internetMessageId eq '<…>'` on the
        folder's messages (learn.microsoft.com/graph/api/user-list-messages; OData doubles a quote inside a
        string literal). Exchange saves what sendMail/reply accepted to Sent Items itself."""
        literal = f"<{rfc_message_id}>".replace("'", "''")
        answer = self.client.get_json("me/mailFolders/sentitems/messages", what="sent items",
                                      params={"$filter": f"internetMessageId eq '{literal}'", "$select": "id"})
        return bool(answer.get("value"))

    def close(self) -> None:
        self.client.session.close()

    # ---- push ------------------------------------------------------------------------------------------
    def start_push(self) -> PushState:
        return self.subscriptions.start()

    def renew_push(self, state: PushState) -> PushState:
        return self.subscriptions.renew(state)

    def stop_push(self, state: PushState) -> None:
        self.subscriptions.stop(state)

    def reauthorize_push(self, subscription_id: str) -> None:
        self.subscriptions.reauthorize(subscription_id)
