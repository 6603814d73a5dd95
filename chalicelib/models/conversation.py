"""Conversations (threads): the keys that find a message's conversation, and one list entry per mailbox.

`ThreadKey` items map what identifies a thread to its conversation id (`threads/identity.py` builds them):
  "<tenant>#mid#<Message-ID lowercased>"             a stored message (any mailbox, any folder of the tenant)
  "<tenant>#pt#<mailbox_id>#<provider thread id>"    Gmail threadId / Graph conversationId, per mailbox
  "<tenant>#subj#<subject digest>#<address>"          the subject fallback: one per external participant,
                                                       with the message's `date` (a bounded time window)
`ThreadEntry` is a conversation as one mailbox sees it (`by_activity`: newest activity first): the count,
participants and latest message of that mailbox's copies only, so a list never reveals another mailbox's mail.
A message carries its `conversation_id` (`Message.by_conversation` lists a conversation's messages in order).
"""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain


class ThreadKey(Model):
    Meta = table_meta("thread_keys")

    key = UnicodeAttribute(hash_key=True)
    conversation_id = UnicodeAttribute()
    date = UnicodeAttribute(null=True)             # subject keys: the message's date (time window)


class ThreadEntriesByActivity(GlobalSecondaryIndex):
    """`activity_key = "<latest date>#<conversation_id>"`: a mailbox's conversations, newest activity first."""
    class Meta:
        index_name = "by_activity"
        projection = AllProjection()

    mailbox_id = UnicodeAttribute(hash_key=True)
    activity_key = UnicodeAttribute(range_key=True)


class ThreadEntry(SendsConflictsAgain, Model):
    Meta = table_meta("thread_entries")

    mailbox_id = UnicodeAttribute(hash_key=True)
    conversation_id = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute(null=True)
    subject = UnicodeAttribute(null=True)
    message_count = NumberAttribute(default=0)
    participants = UnicodeSetAttribute(null=True)  # "<address>\t<name>" (names may differ per message)
    activity_key = UnicodeAttribute(null=True)
    latest_date = UnicodeAttribute(null=True)
    latest_message_id = UnicodeAttribute(null=True)
    unread_count = NumberAttribute(null=True)      # counted copies unread at the source (threads/unread.py);
    #                                                absent while none of them had a known read state

    by_activity = ThreadEntriesByActivity()
