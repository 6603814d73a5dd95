"""The per-folder IMAP cursor: what the store has incorporated, and what the server looked like then.

Fields (RFC 3501 §2.3.1.1 UIDs, RFC 7162 CONDSTORE):
- `mailbox`: the server's name of the folder (resolved once; "sent" needs a LIST to find it), or None when the
  server has no such folder yet (it is looked for again on every sync).
- `uidvalidity`: UIDs are meaningful only within one UIDVALIDITY; a change invalidates the cursor.
- `last_uid`: every message with UID <= last_uid has been considered (listed, or skipped as older than the
  import date). New mail always gets UID >= UIDNEXT > last_uid (UIDs strictly ascend), so "new" is
  `UID SEARCH UID last_uid+1:*`, filtered to UIDs > last_uid (a `n:*` range always matches the highest UID).
- `uidnext`, `messages`: STATUS UIDNEXT/MESSAGES when the cursor was made. If a later STATUS shows both
  unchanged (and nothing is pending), nothing was added (UIDNEXT would grow) and nothing was expunged (MESSAGES
  would drop) — the idle sync is that one STATUS.
- `below`: how many server messages had UID <= last_uid; fewer later means something at or below last_uid was
  expunged, found by diffing `known` against `UID SEARCH UID 1:last_uid`.
- `known`: the UIDs listed so far (the ones the store holds), as an IMAP sequence set ("1:40,42,45:60") so it
  stays compact.
- `boundary`: during a paged initial import, UIDNEXT-1 at its start; UIDs <= boundary are listed only when
  INTERNALDATE >= the import date (`SINCE`). None once the initial import is complete.
- `modseq`: HIGHESTMODSEQ (CONDSTORE servers), kept for flag-change detection; None without CONDSTORE.

Encoded as compact JSON with short keys; anything malformed decodes to `CursorError`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Iterable

VERSION = 1


class CursorError(ValueError):
    """The cursor cannot be read (corrupt or from another version): resync."""


@dataclass(frozen=True)
class FolderCursor:
    mailbox: str | None
    uidvalidity: int = 0
    last_uid: int = 0
    uidnext: int = 0
    messages: int = 0
    below: int = 0
    known: tuple[int, ...] = ()
    boundary: int | None = None
    modseq: int | None = None

    @property
    def pending(self) -> bool:
        """More messages with UID > last_uid existed when this cursor was made (a page is outstanding)."""
        return self.boundary is not None or self.messages != self.below or self.uidnext - 1 > self.last_uid

    def with_(self, **changes) -> "FolderCursor":
        return replace(self, **changes)


def encode_uid_set(uids: Iterable[int]) -> str:
    """Sorted, de-duplicated UIDs as an IMAP sequence set (RFC 3501 §9 `sequence-set`), e.g. "1:3,7,9:10"."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = None
    for uid in ordered:
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}" if start == prev else f"{start}:{prev}")
            start = prev = uid
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}:{prev}")
    return ",".join(parts)


def decode_uid_set(text: str) -> tuple[int, ...]:
    if not text:
        return ()
    uids: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        a, b = int(low), int(high or low)
        if a <= 0 or b < a:
            raise CursorError(f"bad uid range {part!r}")
        uids.extend(range(a, b + 1))
    return tuple(uids)


def encode(cursor: FolderCursor) -> str:
    data = {"v": VERSION, "mb": cursor.mailbox, "uv": cursor.uidvalidity, "last": cursor.last_uid,
            "next": cursor.uidnext, "n": cursor.messages, "below": cursor.below,
            "k": encode_uid_set(cursor.known)}
    if cursor.boundary is not None:
        data["b"] = cursor.boundary
    if cursor.modseq is not None:
        data["ms"] = cursor.modseq
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode(text: str) -> FolderCursor:
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise CursorError("unknown cursor version")
        mailbox = data["mb"]
        if mailbox is not None and not isinstance(mailbox, str):
            raise CursorError("bad mailbox name")
        ints = {key: int(data[key]) for key in ("uv", "last", "next", "n", "below")}
        if any(value < 0 for value in ints.values()):
            raise CursorError("negative field")
        boundary = data.get("b")
        modseq = data.get("ms")
        return FolderCursor(mailbox=mailbox, uidvalidity=ints["uv"], last_uid=ints["last"], uidnext=ints["next"],
                            messages=ints["n"], below=ints["below"], known=decode_uid_set(data.get("k", "")),
                            boundary=int(boundary) if boundary is not None else None,
                            modseq=int(modseq) if modseq is not None else None)
    except CursorError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CursorError(f"unreadable cursor ({type(exc).__name__})") from None
