"""Guards the Graph adapter's reading of one delta page — an id given twice fetched twice, or a message that
went and came back (or came and went) within one page ending in the wrong state (stored then marked removed) —
and of a streamed MIME body read past the size limit."""
from __future__ import annotations

from datetime import date

from chalicelib.providers.base import OAuthContext
from chalicelib.providers.graph.adapter import GraphProvider

ROOT = "https://graph.test/v1.0"


class PageClient:
    """A Graph client stub answering one delta page."""

    def __init__(self, value: list[dict]):
        self.value = value

    def get_json(self, path_or_link: str, **kwargs) -> dict:
        return {"value": self.value, "@odata.deltaLink": f"{ROOT}/me/mailFolders/inbox/messages/delta?$deltatoken=2"}


def changes(value: list[dict], cursor: str | None = f"d {ROOT}/delta?$deltatoken=1"):
    context = OAuthContext(tenant_id="tnt", mailbox_id="mbx", email="a@contoso.example")
    provider = GraphProvider(context, client=PageClient(value))
    return provider.changes("inbox", cursor, since=date(2026, 11, 20), page_size=50)


def message(message_id: str, *, is_read: bool = False) -> dict:
    return {"id": message_id, "isRead": is_read, "conversationId": "c-" + message_id}


def removed(message_id: str) -> dict:
    return {"id": message_id, "@removed": {"reason": "deleted"}}


def test_an_id_given_twice_is_one_ref_with_its_last_read_state():
    change_set = changes([message("A"), message("B"), message("A", is_read=True)])
    assert [(ref.provider_id, ref.seen) for ref in change_set.changed] == [("B", False), ("A", True)]
    assert change_set.removed == ()


def test_removed_then_listed_again_is_listed_only():
    change_set = changes([removed("A"), message("A")])
    assert [ref.provider_id for ref in change_set.changed] == ["A"] and change_set.removed == ()


def test_listed_then_removed_is_removed_only():
    change_set = changes([message("A"), removed("A"), message("B")])
    assert [ref.provider_id for ref in change_set.changed] == ["B"] and change_set.removed == ("A",)


def test_the_first_round_dedupes_its_new_refs_too():
    change_set = changes([message("A"), message("A")], cursor=None)
    assert [ref.provider_id for ref in change_set.new] == ["A"] and change_set.changed == ()


class ChunkedBody:
    """A streamed response without Content-Length (chunked transfer coding)."""

    def __init__(self, chunks: list[bytes]):
        self.chunks, self.read = chunks, 0

    def iter_content(self, chunk_size: int):
        for chunk in self.chunks:
            self.read += 1
            yield chunk


def test_a_body_without_a_length_is_cut_at_the_limit_and_the_rest_left_unread():
    """Guards against: an undeclared oversize MIME body read whole before the size check."""
    from chalicelib.providers.graph.adapter import _read_at_most
    body = ChunkedBody([b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10])
    assert _read_at_most(body, 15) is None and body.read == 2
    assert _read_at_most(ChunkedBody([b"a" * 10, b"b" * 5]), 15) == b"a" * 10 + b"b" * 5
