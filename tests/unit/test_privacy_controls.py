"""Never-import / never-pair lists and private marks: honoured by both ingest paths, by pairing (page, single
and late pairing), by record tabs, by reading through records and by pairing events; and who may change them."""
from __future__ import annotations

import time

import boto3
import pytest

from chalicelib.config import get_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.pairing import AuditEntry
from chalicelib.models.privacy import TENANT_SCOPE, user_scope
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine, late
from chalicelib.pairing.page import pair_page
from chalicelib.pairing.store import active_links
from chalicelib.privacy import lists
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import engine as sync_engine
from chalicelib.sync import store, store_page
from chalicelib.sync.engine import SyncOptions
from chalicelib.timeutil import isoformat, utcnow
from tests.mailfactory import make_message as raw_message
from tests.sync_helpers import FakeProvider, cursor_field, reload
from tests.sync_helpers import make_mailbox as make_sync_mailbox
from tests.unit.pairing_fixtures import make_mailbox, make_message, make_tenant
from tests.unit.test_sharing_matrix import make_world  # noqa: F401 - the fixture that builds a tenant's world


def raw_keys() -> list[str]:
    answer = boto3.client("s3").list_objects_v2(Bucket=get_settings().raw_bucket)
    return [o["Key"] for o in answer.get("Contents", [])]


def fetched(uid: str, folder: str = "inbox", **kwargs) -> FetchedMessage:
    return FetchedMessage(MessageRef(folder, uid), raw_message(**kwargs))


def linked(message) -> set[tuple[str, str]]:
    return {(link.entity_type, link.entity_id) for link in active_links(message.message_id)}


def test_entries_are_normalized_by_casefold_and_idna():
    """Guards against a listed address escaping the list through letter case or a Unicode domain."""
    assert lists.normalize_entry(" Jan@BÜCHER.Example ") == "jan@xn--bcher-kva.example"
    assert lists.normalize_entry("@Bücher.example") == "@xn--bcher-kva.example"
    matcher = lists.Matcher.of([lists.normalize_entry("@bücher.example"), lists.normalize_entry("eva@x.example")])
    assert matcher.matches("JAN@xn--BCHER-KVA.example") and matcher.matches("a@mail.bücher.example")
    assert matcher.matches("EVA@X.example")
    assert not matcher.matches("eva@y.example") and not matcher.matches("notbücher.example@z.example")
    for bad in ("no-at-sign", "a@", "a b@x.example", "@"):
        with pytest.raises(lists.InvalidEntry):
            lists.normalize_entry(bad)


def test_never_import_is_honoured_by_the_batched_page_path_and_the_single_path(aws):
    """Guards against mail of a never-import address being stored (item or raw object) on either ingest path,
    and against the owner's list leaking onto other users' mailboxes."""
    tenant_id = make_tenant()
    mailbox = make_mailbox(tenant_id, owner="u-alice")
    other = make_mailbox(tenant_id, owner="u-bob", email="bob@acme-crm.example")
    lists.put_list(tenant_id, TENANT_SCOPE, ["@spam.example"], [])
    lists.put_list(tenant_id, user_scope("u-alice"), ["Doctor@Clinic.example"], [])
    page = [fetched("1", from_="Ads <ads@news.spam.example>", to="alice@acme-crm.example", subject="Ad"),
            fetched("2", from_="doctor@clinic.example", to="alice@acme-crm.example", subject="Results"),
            fetched("3", from_="jan@customer.example", to="alice@acme-crm.example", subject="Kept"),
            fetched("4", folder="sent", from_="alice@acme-crm.example", to=["jan@customer.example",
                                                                             "DOCTOR@clinic.example"],
                    subject="Outbound to the doctor")]

    outcomes = store_page.save_page(mailbox, page)

    kept = [o.message for o in outcomes if o.message.skipped_reason is None]
    refused = [o.message for o in outcomes if o.message.skipped_reason == store.NEVER_IMPORT]
    assert [m.subject for m in kept] == ["Kept"] and len(refused) == 3
    assert [m.subject for m in Message.by_mailbox.query(mailbox.mailbox_id)] == ["Kept"]
    assert raw_keys() == [kept[0].raw_s3_key]
    assert int(Mailbox.get(tenant_id, mailbox.mailbox_id).skipped_count) == 3

    single = store.save_fetched(mailbox, fetched("5", from_="x@spam.example", to="alice@acme-crm.example"))
    assert single.message.skipped_reason == store.NEVER_IMPORT and len(raw_keys()) == 1
    with pytest.raises(Message.DoesNotExist):
        Message.get(single.message.message_id)
    # Bob's mailbox: the tenant's list applies, Alice's own list does not
    bob = store_page.save_page(other, [fetched("6", from_="doctor@clinic.example", to="bob@acme-crm.example"),
                                       fetched("7", from_="y@spam.example", to="bob@acme-crm.example")])
    assert [o.message.skipped_reason for o in bob] == [None, store.NEVER_IMPORT]


def test_never_pair_is_honoured_by_single_page_and_late_pairing(aws):
    """Guards against pairing (any of its paths) linking mail through a never-pair address."""
    tenant_id = make_tenant()
    mailbox = make_mailbox(tenant_id, owner="u-alice")
    directory.put_record(tenant_id, "contact", "p-1", {"emails": ["jan@customer.example"]})
    directory.put_record(tenant_id, "contact", "p-2", {"emails": ["eva@customer.example"]})
    lists.put_list(tenant_id, user_scope("u-alice"), [], ["JAN@customer.example"])
    recent = isoformat(utcnow())
    single = make_message(mailbox, sender="jan@customer.example", date=recent)
    assert engine.pair_message(single).skipped == "blocklisted" and linked(single) == set()
    jan, eva = (make_message(mailbox, sender=s, date=recent) for s in ("jan@customer.example",
                                                                       "eva@customer.example"))
    pair_page([jan, eva], mailbox)
    assert linked(jan) == set() and linked(eva) == {("contact", "p-2")}
    lists.put_list(tenant_id, TENANT_SCOPE, [], ["@late.example"])
    later = make_message(mailbox, sender="petr@late.example", date=recent)
    directory.put_record(tenant_id, "contact", "p-3", {"emails": ["petr@late.example"]})
    records = list(directory.read_records(tenant_id, ["contact#p-3"]).values())
    report = late.repair_recent(tenant_id, records)
    assert report.candidates == 1 and linked(later) == set()


def test_privacy_lists_api_access(api, tenant):
    """Guards against a user reading or replacing another user's lists or the tenant's."""
    key = tenant["key"]
    body = {"never_import": ["@Spam.example"], "never_pair": ["Jan@customer.example"]}
    put = api("PUT", "/v1/privacy/lists", key=key, json_body=body)
    assert put.status == 200 and put.json["never_import"] == ["@spam.example"]
    assert put.json["never_pair"] == ["jan@customer.example"]
    assert api("GET", "/v1/privacy/lists", key=key, user="u-1").status == 403
    assert api("PUT", "/v1/privacy/lists", key=key, user="u-1", json_body=body).status == 403
    own = api("PUT", "/v1/users/u-1/privacy-lists", key=key, user="u-1", json_body={"never_import": ["a@b.example"]})
    assert own.status == 200 and own.json["scope"] == "user#u-1"
    assert api("GET", "/v1/users/u-1/privacy-lists", key=key, user="u-2").status == 404
    assert api("PUT", "/v1/users/u-1/privacy-lists", key=key, user="u-2", json_body=body).status == 404
    assert api("GET", "/v1/users/u-1/privacy-lists", key=key).json["never_import"] == ["a@b.example"]
    bad = api("PUT", "/v1/privacy/lists", key=key, json_body={"never_import": ["not an address"]})
    assert bad.status == 422 and bad.json["errors"][0]["field"] == "never_import"


def test_private_mark_hides_from_record_tabs_record_readers_and_pairing_events(api, make_world):  # noqa: F811
    """Guards against a private message showing in a record's tab, being read through a record, or announced
    by pairing events; and against a read user marking mail private."""
    world = make_world("personal")
    key, message_id = world["tenant"]["key"], world["message"].message_id
    path = f"/v1/messages/{message_id}/privacy"
    tab = "/v1/directory/project/pr-1/messages"
    assert api("GET", f"/v1/messages/{message_id}", key=key, user="u-recorder").status == 200
    assert [m["id"] for m in api("GET", tab, key=key).json["items"]] == [message_id]

    assert api("PUT", path, key=key, user="u-reader", json_body={"private": True}).status == 403
    marked = api("PUT", path, key=key, user="u-writer", json_body={"private": True})

    assert marked.status == 200 and marked.json == {"id": message_id, "private": True, "changed": True}
    assert api("GET", f"/v1/messages/{message_id}", key=key, user="u-recorder").status == 404
    assert api("GET", f"/v1/messages/{message_id}", key=key, user="u-reader").status == 200   # mailbox access
    assert api("GET", tab, key=key).json["items"] == []
    assert api("GET", tab, key=key, user="u-owner").json["items"] == []
    paired_before = len(list_events(world["tenant"]["id"], "message.paired"))
    linked_now = api("POST", f"/v1/messages/{message_id}/links", key=key, user="u-writer",
                     json_body={"type": "project", "id": "pr-2"})
    assert linked_now.status == 201
    assert len(list_events(world["tenant"]["id"], "message.paired")) == paired_before
    actions = [e.action for e in AuditEntry.query(world["tenant"]["id"]) if e.message_id == message_id]
    assert "message.private" in actions
    assert {(link.entity_type, link.entity_id) for link in active_links(message_id)} >= {("project", "pr-1")}

    again = api("PUT", path, key=key, json_body={"private": False})
    assert again.json["changed"] is True
    assert api("GET", f"/v1/messages/{message_id}", key=key, user="u-recorder").status == 200
    assert [m["id"] for m in api("GET", tab, key=key).json["items"]] == [message_id]


def test_sync_folders_selects_the_synced_folder_roles(api, make_world, aws):  # noqa: F811
    """Guards against a folder turned off still being read (or its stored mail or cursor being dropped), and
    against a malformed folder name being accepted (named folders are accepted and kept as given)."""
    world = make_world("personal")
    key, mailbox_id = world["tenant"]["key"], world["mailbox"].mailbox_id
    assert api("GET", f"/v1/mailboxes/{mailbox_id}", key=key).json["sync_folders"] == ["inbox", "sent"]
    for bad_value in (["Spam\r\nX"], ["x" * 256], [" "]):
        bad = api("PATCH", f"/v1/mailboxes/{mailbox_id}", key=key, json_body={"sync_folders": bad_value})
        assert bad.status == 422 and "sync_folders" in bad.json["errors"][0]["field"], bad
    assert api("PATCH", f"/v1/mailboxes/{mailbox_id}", key=key, json_body={"sync_folders": []}).status == 422
    named = api("PATCH", f"/v1/mailboxes/{mailbox_id}", key=key,
                json_body={"sync_folders": ["Projects/Acme", "INBOX", "Sent", "Projects/Acme"]})
    assert named.status == 200 and named.json["sync_folders"] == ["inbox", "sent", "Projects/Acme"]
    changed = api("PATCH", f"/v1/mailboxes/{mailbox_id}", key=key, json_body={"sync_folders": ["inbox"]})
    assert changed.status == 200 and changed.json["sync_folders"] == ["inbox"]

    mailbox = make_sync_mailbox(sync_folders=["sent"])
    provider = FakeProvider({"inbox": 3, "sent": 2})
    sync_engine.sync_mailbox(mailbox, provider, time.monotonic() + 60, options=SyncOptions(page_size=10))
    assert {m.folder for m in Message.by_mailbox.query(mailbox.mailbox_id)} == {"sent"}
    assert [folder for folder, _ in provider.changes_calls] == ["sent"]
    mailbox.update(actions=[Mailbox.sync_folders.set(["inbox"])])
    sent_cursor = cursor_field(reload(mailbox), "sent")
    provider.add("sent", 1)
    sync_engine.sync_mailbox(reload(mailbox), provider, time.monotonic() + 60, options=SyncOptions(page_size=10))
    stored = [m.folder for m in Message.by_mailbox.query(mailbox.mailbox_id)]
    assert sorted(stored) == ["inbox"] * 3 + ["sent"] * 2                      # sent's mail stays, not read
    assert cursor_field(reload(mailbox), "sent") == sent_cursor                 # its cursor is kept
