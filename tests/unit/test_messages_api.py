"""Guards against the messages API leaking mail (other tenants, other users, hidden mail, unsafe HTML) or
misordering it."""
from __future__ import annotations

import datetime as dt

import pytest

from chalicelib.models.mailbox import MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)


def save(mailbox, uid: str, *, folder: str = "inbox", days: int = 0, **kwargs) -> Message:
    raw = make_message(date=DAY + dt.timedelta(days=days), **kwargs)
    return store.save_fetched(mailbox, FetchedMessage(MessageRef(folder, uid), raw)).message


@pytest.fixture
def mailbox(tenant):
    return make_mailbox(tenant["id"], "mbx_api", owner_user_id="u-alice")


def listing(api, tenant, query: str = "", **kw):
    result = api("GET", f"/v1/mailboxes/mbx_api/messages{query}", key=tenant["key"], **kw)
    assert result.status == 200, result
    return result.json


def test_list_is_newest_first_with_the_documented_shape(api, tenant, mailbox):
    save(mailbox, "1", days=0, subject="old")
    save(mailbox, "2", days=2, subject="new", from_="Jan Novák <jan@acme.example>", cc="c@acme.example")
    save(mailbox, "3", days=1, subject="middle", folder="sent")
    body = listing(api, tenant)
    assert [m["subject"] for m in body["items"]] == ["new", "middle", "old"]
    assert body["next_cursor"] is None
    item = body["items"][0]
    assert set(item) == {"id", "mailbox_id", "folder", "direction", "subject", "from", "to", "cc", "date",
                         "snippet", "has_attachments", "links", "removed_at_source", "skipped_reason", "unread"}
    assert item["from"] == {"name": "Jan Novák", "email": "jan@acme.example"}
    assert item["to"] == [{"name": "", "email": "alice@example.com"}]
    assert item["cc"] == [{"name": "", "email": "c@acme.example"}]
    assert item["date"] == "2026-11-22T08:00:00Z" and item["snippet"] == "Hello, this is a test."
    assert item["links"] == [] and item["direction"] == "inbound" and item["mailbox_id"] == "mbx_api"


def test_folder_filter(api, tenant, mailbox):
    save(mailbox, "1", subject="in")
    save(mailbox, "2", subject="out", folder="sent")
    assert [m["subject"] for m in listing(api, tenant, "?folder=sent")["items"]] == ["out"]
    assert [m["direction"] for m in listing(api, tenant, "?folder=sent")["items"]] == ["outbound"]
    assert listing(api, tenant, "?folder=Trash")["items"] == []          # a named folder (sync_folders)
    assert api("GET", "/v1/mailboxes/mbx_api/messages?folder=" + "x" * 256, key=tenant["key"]).status == 422


def test_paired_filter(api, tenant, mailbox):
    paired = save(mailbox, "1", subject="paired")
    save(mailbox, "2", subject="alone")
    paired.update(actions=[Message.link_count.set(1)])
    MessageLink(paired.message_id, "project#pr-7", tenant_id=tenant["id"], mailbox_id="mbx_api",
                entity_type="project", entity_id="pr-7", date_key=paired.date_key, source="auto",
                reason="subject tag #1234#", created_at="2026-11-23T00:00:00Z").save()
    [item] = listing(api, tenant, "?paired=true")["items"]
    assert item["subject"] == "paired"
    assert item["links"] == [{"type": "project", "id": "pr-7", "source": "auto", "reason": "subject tag #1234#"}]
    assert [m["subject"] for m in listing(api, tenant, "?paired=false")["items"]] == ["alone"]


def test_pagination_with_signed_cursor(api, tenant, mailbox):
    for i in range(5):
        save(mailbox, str(i), days=i, subject=f"m{i}")
    first = listing(api, tenant, "?limit=2")
    second = listing(api, tenant, f"?limit=2&cursor={first['next_cursor']}")
    third = listing(api, tenant, f"?limit=2&cursor={second['next_cursor']}")
    subjects = [m["subject"] for page in (first, second, third) for m in page["items"]]
    assert subjects == ["m4", "m3", "m2", "m1", "m0"]
    tampered = first["next_cursor"][:-2] + ("AA" if not first["next_cursor"].endswith("AA") else "BB")
    assert api("GET", f"/v1/mailboxes/mbx_api/messages?cursor={tampered}", key=tenant["key"]).status == 400
    # a cursor minted for another listing (folder) is refused
    assert api("GET", f"/v1/mailboxes/mbx_api/messages?folder=inbox&cursor={first['next_cursor']}",
               key=tenant["key"]).status == 400



def test_rarely_matching_filter_reads_a_bounded_number_of_pages(api, tenant, mailbox):
    """?paired=true over a mailbox of unpaired mail read the whole partition in one request."""
    from chalicelib.models.paging import MAX_PAGES
    paired = save(mailbox, "0", days=MAX_PAGES + 1, subject="paired")     # just past the first request's reach
    paired.update(actions=[Message.link_count.set(1)])
    alone = [i for i in range(1, 2 * MAX_PAGES + 2) if i != MAX_PAGES + 1]
    for i in alone:
        save(mailbox, str(i), days=i, subject=f"alone {i}")
    pages, cursor = [], ""
    while True:
        page = listing(api, tenant, f"?paired=true&limit=1{cursor}")
        pages.append([m["subject"] for m in page["items"]])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
        assert len(pages) < 10
    assert pages[0] == [] and [s for page in pages for s in page] == ["paired"]
    assert len(pages) >= 3
    seen, cursor = [], ""
    while True:                          # pages that stop mid-way through a DynamoDB page resume exactly
        page = listing(api, tenant, f"?paired=false&limit=3{cursor}")
        seen += [m["subject"] for m in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [f"alone {i}" for i in reversed(alone)]


def test_snippet_hidden_when_mailbox_does_not_show_snippets(api, tenant, mailbox):
    message = save(mailbox, "1")
    mailbox.update(actions=[type(mailbox).show_snippet.set(False)])
    assert listing(api, tenant)["items"][0]["snippet"] is None
    assert api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"]).json["snippet"] is None


def test_detail_sanitizes_html_and_maps_inline_images(api, tenant, mailbox):
    html = ('<p onclick="x()">Hi</p><script>alert(1)</script><img src="cid:logo@acme">'
            '<a href="javascript:alert(1)">bad</a>')
    raw = make_message(subject="Rich", html=html, attachments=[("report.pdf", "application/pdf", b"%PDF-data")],
                       extra_headers={"Auto-Submitted": "auto-generated"})
    raw = raw.replace(b'Content-Disposition: attachment; filename="report.pdf"',
                      b'Content-Disposition: attachment; filename="report.pdf"\r\nContent-ID: <logo@acme>')
    message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message
    result = api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"])
    assert result.status == 200, result
    body = result.json
    path = f"/v1/messages/{message.message_id}/attachments/0"
    url = f"http://127.0.0.1:8000{path}"              # under the public base URL (tests/unit/test_public_urls.py)
    assert "<script" not in body["html"] and "onclick" not in body["html"] and "javascript:" not in body["html"]
    assert f'<img src="{url}">' in body["html"]
    assert body["text"].startswith("Hello,") and body["headers"] == {"auto-submitted": "auto-generated"}
    assert body["attachments"] == [{"index": 0, "filename": "report.pdf", "content_type": "application/pdf",
                                    "size": 9, "content_id": "logo@acme", "disposition": "attachment",
                                    "download_url": url}]
    assert body["parse_errors"] == [] and body["rfc_message_id"] == message.rfc_message_id

    download = api("GET", path, key=tenant["key"], headers={"Accept": "*/*"})
    assert download.status == 200 and download.body == b"%PDF-data"
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith('attachment; filename="report.pdf"')
    assert api("GET", f"/v1/messages/{message.message_id}/attachments/1", key=tenant["key"],
               headers={"Accept": "*/*"}).status == 404
    assert api("GET", f"/v1/messages/{message.message_id}/attachments/x", key=tenant["key"],
               headers={"Accept": "*/*"}).status == 404
    # a 5,000-digit index once crashed int() (Python's digit limit) with a 500
    assert api("GET", f"/v1/messages/{message.message_id}/attachments/{'9' * 5000}", key=tenant["key"],
               headers={"Accept": "*/*"}).status == 404


def test_attachment_filename_is_made_safe(api, tenant, mailbox):
    raw = make_message(attachments=[("../../etc/pass\"wd.png", "image/png", b"\x89PNG")])
    message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message
    download = api("GET", f"/v1/messages/{message.message_id}/attachments/0", key=tenant["key"],
                   headers={"Accept": "image/png"})
    assert download.status == 200 and download.body == b"\x89PNG"
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith('attachment; filename="pass_wd.png"')


def test_raw_needs_a_matching_accept_header(api, tenant, mailbox):
    message = save(mailbox, "1")
    raw = store.load_raw(message)
    ok = api("GET", f"/v1/messages/{message.message_id}/raw", key=tenant["key"],
             headers={"Accept": "message/rfc822"})
    assert ok.status == 200 and ok.body == raw and ok.headers["content-type"] == "message/rfc822"
    # Chalice refuses a binary response the client did not ask for: 406 problem (tests/unit/test_api_edges.py)
    assert api("GET", f"/v1/messages/{message.message_id}/raw", key=tenant["key"],
               headers={"Accept": "application/json"}).status == 406


def test_skipped_message_is_listed_and_has_no_raw(api, tenant, mailbox):
    outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "9"), None, "too_large"))
    assert listing(api, tenant)["items"][0]["skipped_reason"] == "too_large"
    detail = api("GET", f"/v1/messages/{outcome.message.message_id}", key=tenant["key"]).json
    assert detail["text"] is None and detail["html"] is None
    assert api("GET", f"/v1/messages/{outcome.message.message_id}/raw", key=tenant["key"],
               headers={"Accept": "*/*"}).status == 404


def test_delete_hides_in_the_crm_only(api, tenant, mailbox):
    message = save(mailbox, "1")
    save(mailbox, "2", subject="other")
    assert api("DELETE", f"/v1/messages/{message.message_id}", key=tenant["key"]).status == 204
    assert [m["subject"] for m in listing(api, tenant)["items"]] == ["other"]
    assert api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"]).status == 404
    stored = Message.get(message.message_id)
    assert stored.hidden and store.load_raw(stored)                   # the S3 object is kept
    assert api("DELETE", f"/v1/messages/{message.message_id}", key=tenant["key"]).status == 404


def test_other_tenant_gets_404_everywhere(api, tenant, other_tenant, mailbox):
    message = save(mailbox, "1")
    key = other_tenant["key"]
    assert api("GET", "/v1/mailboxes/mbx_api/messages", key=key).status == 404
    assert api("GET", f"/v1/messages/{message.message_id}", key=key).status == 404
    assert api("GET", f"/v1/messages/{message.message_id}/raw", key=key, headers={"Accept": "*/*"}).status == 404
    assert api("GET", f"/v1/messages/{message.message_id}/attachments/0", key=key,
               headers={"Accept": "*/*"}).status == 404
    assert api("DELETE", f"/v1/messages/{message.message_id}", key=key).status == 404
    assert not Message.get(message.message_id).hidden


def test_user_access_follows_mailbox_ownership_and_shares(api, tenant, mailbox):
    message = save(mailbox, "1")
    path = f"/v1/messages/{message.message_id}"
    assert api("GET", "/v1/mailboxes/mbx_api/messages", key=tenant["key"], user="u-bob").status == 404
    assert api("GET", path, key=tenant["key"], user="u-bob").status == 404
    assert api("GET", path, key=tenant["key"], user="u-alice").status == 200
    MailboxShare("mbx_api", "u-bob", tenant_id=tenant["id"], user_key=f"{tenant['id']}#u-bob", access="read",
                 created_at="2026-11-23T00:00:00Z").save()
    assert len(listing(api, tenant, user="u-bob")["items"]) == 1
    assert api("DELETE", path, key=tenant["key"], user="u-bob").status == 403      # read-only share
    assert api("DELETE", path, key=tenant["key"], user="u-alice").status == 204
