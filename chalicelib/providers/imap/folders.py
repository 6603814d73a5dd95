"""Maps the logical folders "inbox" and "sent" (and named folders from `sync_folders`) to server mailbox names.

INBOX is always "INBOX" (RFC 3501 §5.1, case-insensitive). Sent is the mailbox LIST flags `\\Sent`
(SPECIAL-USE, RFC 6154 §2); servers without SPECIAL-USE are matched by the common names clients use.
"""
from __future__ import annotations

from typing import Sequence

LOGICAL_FOLDERS = ("inbox", "sent")
SENT_FALLBACK_NAMES = ("Sent", "Sent Items", "Sent Messages", "INBOX.Sent", "INBOX/Sent", "[Gmail]/Sent Mail",
                       "[Google Mail]/Sent Mail", "Sent Mail")


def find_sent(folders: Sequence[tuple[Sequence[str], str]]) -> str | None:
    """The Sent mailbox among LIST rows [(flags, name)]: the \\Sent special-use flag wins, then the first
    fallback name (case-insensitive) in the order above; None when there is none."""
    for flags, name in folders:
        if any(flag.lower() == "\\sent" for flag in flags) and not _unselectable(flags):
            return name
    by_lower = {name.lower(): name for flags, name in folders if not _unselectable(flags)}
    for candidate in SENT_FALLBACK_NAMES:
        if candidate.lower() in by_lower:
            return by_lower[candidate.lower()]
    return None


def find_named(folders: Sequence[tuple[Sequence[str], str]], name: str) -> str | None:
    """A named folder (`sync_folders`) among LIST rows: the selectable mailbox with exactly this name (INBOX
    case-insensitively, RFC 3501 §5.1); None when the server has none."""
    for flags, listed in folders:
        if not _unselectable(flags) and (listed == name or (listed.upper() == "INBOX" == name.upper())):
            return listed
    return None


def _unselectable(flags: Sequence[str]) -> bool:
    return any(flag.lower() in ("\\noselect", "\\nonexistent") for flag in flags)
