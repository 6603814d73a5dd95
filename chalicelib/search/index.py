"""The search index behind one small interface (`SearchBackend`); the default is an inverted index in
DynamoDB (`DynamoIndex`, table `search_index`, `models/search.py`), which works with what `make run` starts.
Another backend (e.g. OpenSearch) would implement the same three methods; none is built.

Writes (`index`, `forget`) are idempotent: a posting's key is (tenant + token, date + message id) and its
content derives from the message, so a redelivered batch rewrites the same items; `forget` deletes the
postings listed on the message's document item, then the document.

Query (`search`): AND of the tokens. The longest token drives (one Query, newest first, the filters on the
posting applied by DynamoDB, the date range on the sort key); each page of candidates is checked against the
other tokens with BatchGetItem on the same sort key (a posting exists ⇔ the message has the token). At most
`MAX_SCANNED` postings of the driving token are read per request; the cursor then resumes after the last one
read, so a sparse match over a common word comes back in several short pages rather than one slow one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

from chalicelib.models.message import Message
from chalicelib.models.search import DOC_SORT_KEY, SearchPosting
from chalicelib.search.tokens import message_tokens

MAX_SCANNED = 1_000          # postings of the driving token read per request
PAGE_SIZE = 200
BATCH_GET_KEYS = 100
MAX_MAILBOX_FILTER = 100     # DynamoDB's IN takes 100 operands; larger sets are filtered after reading


@dataclass(frozen=True)
class SearchFilters:
    mailbox_ids: frozenset[str] | None = None     # None: every mailbox of the tenant
    folder: str | None = None
    direction: str | None = None
    has_attachments: bool | None = None
    after: str | None = None                      # ISO date/time, inclusive
    before: str | None = None                     # ISO date/time, exclusive


@dataclass
class SearchPage:
    message_ids: list[str] = field(default_factory=list)      # newest first
    last_key: dict[str, Any] | None = None                    # resume here (None: nothing left)
    scanned: int = 0


class SearchBackend(Protocol):
    def index(self, messages: Sequence[Message]) -> int: ...
    def forget(self, messages: Sequence[Message]) -> int: ...
    def search(self, tenant_id: str, tokens: Sequence[str], filters: SearchFilters, limit: int,
               start_key: dict[str, Any] | None) -> SearchPage: ...


def token_key(tenant_id: str, token: str) -> str:
    return f"{tenant_id}#{token}"


def doc_key(tenant_id: str, message_id: str) -> str:
    return f"{tenant_id}#doc#{message_id}"


def sort_key(message: Message) -> str:
    return f"{message.date}#{message.message_id}"


class DynamoIndex:
    def postings(self, message: Message) -> list[SearchPosting]:
        tokens = message_tokens(message)
        common = {"message_id": message.message_id, "mailbox_id": message.mailbox_id, "folder": message.folder,
                  "direction": message.direction, "has_attachments": bool(message.has_attachments)}
        items = [SearchPosting(token_key(message.tenant_id, t), sort_key(message), **common) for t in tokens]
        items.append(SearchPosting(doc_key(message.tenant_id, message.message_id), DOC_SORT_KEY,
                                   message_id=message.message_id, tokens=tokens))
        return items

    def index(self, messages: Sequence[Message]) -> int:
        """Index messages still in the store (not removed at the source); returns how many."""
        live = [m for m in messages if not m.removed_at_source]
        with SearchPosting.batch_write() as batch:
            for message in live:
                for item in self.postings(message):
                    batch.save(item)
        return len(live)

    def forget(self, messages: Sequence[Message]) -> int:
        """Delete the messages' postings and documents; returns how many documents were found."""
        keys = [(doc_key(m.tenant_id, m.message_id), DOC_SORT_KEY) for m in messages]
        by_id = {m.message_id: m for m in messages}
        docs = []
        for start in range(0, len(keys), BATCH_GET_KEYS):
            docs += list(SearchPosting.batch_get(keys[start:start + BATCH_GET_KEYS]))
        with SearchPosting.batch_write() as batch:
            for doc in docs:
                message = by_id.get(doc.message_id or "")
                if message is None:
                    continue
                for token in doc.tokens or []:
                    batch.delete(SearchPosting(token_key(message.tenant_id, token), sort_key(message)))
                batch.delete(SearchPosting(doc.token_key, DOC_SORT_KEY))
        return len(docs)

    @staticmethod
    def _filter(filters: SearchFilters):
        condition = None

        def both(extra):
            return extra if condition is None else condition & extra
        if filters.mailbox_ids is not None and len(filters.mailbox_ids) <= MAX_MAILBOX_FILTER:
            condition = both(SearchPosting.mailbox_id.is_in(*sorted(filters.mailbox_ids)))
        if filters.folder:
            condition = both(SearchPosting.folder == filters.folder)
        if filters.direction:
            condition = both(SearchPosting.direction == filters.direction)
        if filters.has_attachments is not None:
            condition = both(SearchPosting.has_attachments == filters.has_attachments)
        return condition

    @staticmethod
    def _range(filters: SearchFilters):
        if filters.after and filters.before:
            return SearchPosting.sort_key.between(filters.after, filters.before)
        if filters.after:
            return SearchPosting.sort_key >= filters.after
        if filters.before:
            return SearchPosting.sort_key < filters.before
        return None

    def _have_all(self, tenant_id: str, others: Sequence[str], candidates: Sequence[SearchPosting]) -> set[str]:
        """Sort keys of the candidates that have every token of `others`."""
        wanted = {c.sort_key for c in candidates}
        for token in others:
            if not wanted:
                break
            keys = [(token_key(tenant_id, token), s) for s in sorted(wanted)]
            present: set[str] = set()
            for start in range(0, len(keys), BATCH_GET_KEYS):
                present |= {p.sort_key for p in SearchPosting.batch_get(keys[start:start + BATCH_GET_KEYS],
                                                                         attributes_to_get=["token_key", "sort_key"])}
            wanted &= present
        return wanted

    def search(self, tenant_id: str, tokens: Sequence[str], filters: SearchFilters, limit: int,
               start_key: dict[str, Any] | None) -> SearchPage:
        driver = max(tokens, key=lambda t: (len(t), t))
        others = [t for t in tokens if t != driver]
        result = SearchPosting.query(token_key(tenant_id, driver), self._range(filters),
                                     filter_condition=self._filter(filters), scan_index_forward=False,
                                     page_size=PAGE_SIZE, last_evaluated_key=start_key)
        page = SearchPage()
        pages = result.page_iter
        for raw_page in pages:
            raw_items = raw_page.get("Items") or []
            page.scanned += int(raw_page.get("ScannedCount") or len(raw_items))
            candidates = [SearchPosting.from_raw_data(raw) for raw in raw_items]
            if filters.mailbox_ids is not None and len(filters.mailbox_ids) > MAX_MAILBOX_FILTER:
                candidates = [c for c in candidates if c.mailbox_id in filters.mailbox_ids]
            matching = self._have_all(tenant_id, others, candidates) if others else {c.sort_key for c in candidates}
            for position, raw in enumerate(raw_items):
                key = raw["sort_key"]["S"]
                if key in matching:
                    page.message_ids.append(key.rsplit("#", 1)[-1])
                    if len(page.message_ids) == limit:
                        if position + 1 < len(raw_items) or pages.last_evaluated_key:
                            page.last_key = {"token_key": raw["token_key"], "sort_key": raw["sort_key"]}
                        return page
            if page.scanned >= MAX_SCANNED:
                page.last_key = pages.last_evaluated_key
                return page
        page.last_key = None
        return page


_BACKEND: SearchBackend = DynamoIndex()


def backend() -> SearchBackend:
    return _BACKEND


def index(messages: Sequence[Message]) -> int:
    """Index stored messages (idempotent)."""
    return backend().index(messages)


def forget(messages: Iterable[Message]) -> int:
    """Remove messages from the index (removal at the source; the privacy purge and erasure may call this)."""
    return backend().forget(list(messages))
