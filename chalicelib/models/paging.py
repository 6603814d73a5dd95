"""Bounded pages of a filtered DynamoDB Query.

DynamoDB applies `Limit` before the `FilterExpression` (Query API reference, "FilterExpression"), and
pynamodb's `ResultIterator` with `limit=` keeps fetching pages until `limit` items pass the filter — for a
filter that rarely matches, one API request would read the whole partition. `filtered_page` reads at most
`max_pages` pages of `page_size` items and returns what matched so far plus the key to resume from; a short
(even empty) page with a non-null key is normal and the client follows the cursor.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pynamodb.models import Model
from pynamodb.pagination import ResultIterator

M = TypeVar("M", bound=Model)
MAX_PAGES = 10


def filtered_page(result: ResultIterator[M], model: type[M], limit: int,
                  max_pages: int = MAX_PAGES) -> tuple[list[M], dict[str, Any] | None]:
    """Up to `limit` items of `result` (a Query made with `page_size`, without `limit`), reading at most
    `max_pages` pages; the key to resume from (None = nothing left)."""
    pages = result.page_iter
    items: list[M] = []
    for pages_read, page in enumerate(pages, start=1):
        raw_items = page.get("Items") or []
        for position, raw in enumerate(raw_items):
            items.append(model.from_raw_data(raw))
            if len(items) == limit and position + 1 < len(raw_items):
                return items, {name: raw[name] for name in pages.key_names}
        if len(items) >= limit or pages_read >= max_pages:
            return items, pages.last_evaluated_key
    return items, None
