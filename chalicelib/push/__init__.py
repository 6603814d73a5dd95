"""Provider push notifications (Gmail Pub/Sub, Microsoft Graph change notifications) → coalesced sync requests."""
from __future__ import annotations


def gmail_push_key(email: str) -> str:
    """`Mailbox.push_key` of a gmail mailbox: Gmail notifications name the account by `emailAddress`."""
    return f"gmail#{email.strip().lower()}"
