"""The search index (`search/index.py`): an inverted index of normalized tokens in one DynamoDB table.

A posting: `token_key = "<tenant>#<token>"`, `sort_key = "<message date>#<message_id>"` (newest first by
querying backwards), with what the filters need (mailbox, folder, direction, attachments) projected onto it.
A message's document item (`token_key = "<tenant>#doc#<message_id>"`, `sort_key = "doc"`) lists the tokens it
was indexed under, so forgetting it deletes exactly those postings whatever the tokenizer does later.
"""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, ListAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.models.base import table_meta

DOC_SORT_KEY = "doc"


class SearchPosting(Model):
    Meta = table_meta("search_index")

    token_key = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)
    message_id = UnicodeAttribute(null=True)
    mailbox_id = UnicodeAttribute(null=True)
    folder = UnicodeAttribute(null=True)
    direction = UnicodeAttribute(null=True)
    has_attachments = BooleanAttribute(null=True)
    tokens = ListAttribute(of=UnicodeAttribute, null=True)     # document items only
