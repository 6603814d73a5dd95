"""Mailbox state of the fake Microsoft Graph: messages per folder (the well-known `inbox` and `sentitems`, and
folders made with `add_folder`), a change log, delta tokens.

Delta query semantics followed (learn.microsoft.com "Get incremental changes to messages in a folder",
"message: delta"): the first round lists the folder's messages (optionally `$filter=receivedDateTime ge X`),
paged with `@odata.nextLink` (`$skiptoken`) by `Prefer: odata.maxpagesize` (or `$top`); its last page carries
`@odata.deltaLink` (`$deltatoken`). A later round returns the messages created or changed since, and
`{"id", "@removed": {"reason": "deleted"}}` for the ones gone. A token of an older generation (the folder's
sync state was dropped) answers 410 Gone with `syncStateNotFound`.
"""
from __future__ import annotations

import base64
import email
import email.policy
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

FOLDERS = ("inbox", "sentitems")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        return {}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeMessage:
    id: str
    folder: str
    raw: bytes
    received: str
    added_seq: int
    is_read: bool = False

    def resource(self) -> dict:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        return {"@odata.type": "#microsoft.graph.message", "@odata.etag": f'W/"{self.added_seq}"', "id": self.id,
                "receivedDateTime": self.received, "internetMessageId": (parsed.get("Message-ID") or "").strip(),
                "subject": str(parsed.get("Subject") or ""), "conversationId": "conv-" + self.id[-8:],
                "parentFolderId": self.folder, "isRead": self.is_read}


@dataclass
class FakeUser:
    email: str
    tenant_id: str
    object_id: str = field(default_factory=lambda: secrets.token_hex(16))
    upn: str | None = None
    messages: dict[str, FakeMessage] = field(default_factory=dict)
    log: list[tuple[int, str, str, str]] = field(default_factory=list)   # (seq, folder, kind, id)
    generation: dict[str, int] = field(default_factory=lambda: {f: 1 for f in FOLDERS})
    folders: dict[str, str] = field(default_factory=lambda: {"inbox": "Inbox", "sentitems": "Sent Items"})
    sent: list[dict] = field(default_factory=list)                       # sendMail / reply / forward calls

    def profile(self) -> dict:
        return {"id": self.object_id, "mail": self.email, "userPrincipalName": self.upn or self.email,
                "displayName": self.email.split("@")[0]}


class MailState:
    """All fake mailboxes; thread-safe (the HTTP server is threaded)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, FakeUser] = {}
        self._seq = itertools.count(1)
        self._last_seq = 0

    def _next_seq(self) -> int:
        self._last_seq = next(self._seq)
        return self._last_seq

    def add_user(self, address: str, tenant_id: str, upn: str | None = None) -> FakeUser:
        with self.lock:
            user = self.users.setdefault(address.lower(), FakeUser(address.lower(), tenant_id, upn=upn))
            return user

    def user(self, address: str) -> FakeUser:
        return self.users[address.lower()]

    def add_folder(self, address: str, display_name: str, *, well_known: str | None = None) -> str:
        """A mail folder (top level): its id is the well-known name when given (`archive`), else opaque."""
        with self.lock:
            user = self.user(address)
            folder_id = well_known or "AAMkFolder" + secrets.token_urlsafe(12)
            user.folders[folder_id] = display_name
            user.generation.setdefault(folder_id, 1)
            return folder_id

    def add_message(self, address: str, folder: str, raw: bytes, *, received: datetime | None = None) -> str:
        with self.lock:
            user = self.user(address)
            message_id = "AAkALg" + secrets.token_urlsafe(24)
            seq = self._next_seq()
            user.messages[message_id] = FakeMessage(message_id, folder, raw,
                                                    iso(received or datetime.now(timezone.utc)), seq)
            user.log.append((seq, folder, "add", message_id))
            return message_id

    def touch_message(self, address: str, message_id: str) -> None:
        """A property change (read flag): delta re-lists the message."""
        with self.lock:
            user = self.user(address)
            user.messages[message_id].is_read = not user.messages[message_id].is_read
            user.log.append((self._next_seq(), user.messages[message_id].folder, "update", message_id))

    def move_message(self, address: str, message_id: str, folder: str) -> None:
        """`POST /messages/{id}/move` with `Prefer: IdType="ImmutableId"`: the id survives the move ("Get
        immutable identifiers for Outlook resources"); the source folder's delta reports it `@removed`, the
        destination's lists it as added ("Get incremental changes to messages in a folder")."""
        with self.lock:
            user = self.user(address)
            message = user.messages[message_id]
            user.log.append((self._next_seq(), message.folder, "remove", message_id))
            message.folder = folder
            user.log.append((self._next_seq(), folder, "add", message_id))

    def remove_message(self, address: str, message_id: str) -> None:
        with self.lock:
            user = self.user(address)
            message = user.messages.pop(message_id)
            user.log.append((self._next_seq(), message.folder, "remove", message_id))

    def drop_sync_state(self, address: str, folder: str) -> None:
        """Every delta token of the folder becomes invalid (next use: 410 syncStateNotFound)."""
        with self.lock:
            self.user(address).generation[folder] += 1

    # ---- delta ---------------------------------------------------------------------------------------------
    def delta(self, address: str, folder: str, *, skiptoken: str | None, deltatoken: str | None,
              since: str | None, page_size: int, link_base: str) -> tuple[int, dict]:
        with self.lock:
            user = self.user(address)
            generation = user.generation[folder]
            if skiptoken or deltatoken:
                state = _unb64(skiptoken or deltatoken or "")
                if state.get("g") != generation:
                    return 410, {"error": {"code": "syncStateNotFound",
                                           "message": "The sync state generation is not valid anymore."}}
            else:
                state = {"g": generation, "p": "i", "s": self._last_seq, "o": 0, "f": since}
            if deltatoken:
                state = {"g": generation, "p": "d", "from": state.get("seq", 0), "to": self._last_seq, "o": 0}
            if state.get("p") == "i":
                items = [m.resource() for m in sorted(user.messages.values(), key=lambda m: m.added_seq)
                         if m.folder == folder and m.added_seq <= state["s"]
                         and (not state.get("f") or m.received >= state["f"])]
                end_seq = state["s"]
            else:
                items = self._changes(user, folder, state["from"], state["to"])
                end_seq = state["to"]
            offset = int(state.get("o") or 0)
            page = items[offset:offset + page_size]
            body: dict = {"@odata.context": f"{link_base}/$metadata#Collection(message)", "value": page}
            if offset + page_size < len(items):
                body["@odata.nextLink"] = f"{link_base}?$skiptoken={_b64({**state, 'o': offset + page_size})}"
            else:
                body["@odata.deltaLink"] = f"{link_base}?$deltatoken={_b64({'g': generation, 'seq': end_seq})}"
            return 200, body

    @staticmethod
    def _changes(user: FakeUser, folder: str, after: int, upto: int) -> list[dict]:
        last: dict[str, tuple[int, str]] = {}
        for seq, log_folder, kind, message_id in user.log:
            if log_folder == folder and after < seq <= upto:
                last[message_id] = (seq, kind)
        out = []
        for message_id, (_, kind) in sorted(last.items(), key=lambda item: item[1][0]):
            message = user.messages.get(message_id)
            if kind == "remove" or message is None:
                out.append({"@odata.type": "#microsoft.graph.message", "id": message_id,
                            "@removed": {"reason": "deleted"}})
            else:
                out.append(message.resource())
        return out
