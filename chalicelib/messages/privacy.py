"""Private marks: a message marked private is seen only by the users of its mailbox.

`set_private(messages, private, actor)` is the one place a mark changes (one message from
`PUT /v1/messages/{id}/privacy`; a whole conversation's messages when threads call it). Effects of the mark
(`Message.private`), enforced where messages are shown:
- record tabs (`pairing.visibility.record_message_page`) leave it out, for everyone;
- reading through a record's readers (`pairing.visibility.readable_through_links`) is refused, so only the
  mailbox's owner, its share users and the tenant admin can open it;
- pairing emits no `message.paired` / `signal.created` events for it (`pairing.engine`, `pairing.manual`).
Existing links are kept (unmarking brings the message back to its records' tabs) but hidden as above.
Each change writes an audit entry (`message.private` / `message.public`, actor, message id).
"""
from __future__ import annotations

from typing import Sequence

from chalicelib.models.message import Message
from chalicelib.pairing.store import audit_entry


def set_private(messages: Sequence[Message], private: bool, actor: str) -> list[str]:
    """Mark (or unmark) `messages`; returns the ids whose mark changed (unchanged ones write nothing)."""
    changed = []
    for message in messages:
        if bool(message.private) == private:
            continue
        action = Message.private.set(True) if private else Message.private.remove()
        message.update(actions=[action], condition=Message.message_id.exists())
        audit_entry(message.tenant_id, "message.private" if private else "message.public", actor,
                    message_id=message.message_id, details={"mailbox_id": message.mailbox_id}).save()
        changed.append(message.message_id)
    return changed
