"""Guards the API's and the pairing's writes against DynamoDB transaction conflicts (injected by
`tests/dynamo_conflicts.py`): a rule or mailbox create overlapping another transaction on the tenant item, a
directory record written while pairings check it, a refresh while the worker's transactions hold the mailbox
item, links of two copies of one message paired at once (the same thread marker). Each answered 500 (or failed
the pairing job); each now lands exactly once."""
from __future__ import annotations

from chalicelib.models.directory import DirectoryRecord, record_key
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink, Rule
from chalicelib.models.tenant import Tenant
from chalicelib.pairing import directory, store as link_store
from tests.unit import pairing_fixtures as pf
from tests.unit.test_message_store import make_mailbox

RULE = {"name": "r", "conditions": {}, "actions": [{"type": "stop"}]}


def test_a_rule_create_goes_through_a_conflict_on_the_tenant_item_as_one_round(api, tenant, conflicts_ahead):
    """A conflict is neither a lost round (another create committed) nor an error (500)."""
    conflicts_ahead("TransactWriteItems", 2, touching="tenants")

    created = api("POST", "/v1/rules", key=tenant["key"], json_body=RULE)

    assert created.status == 201, created
    assert Rule.count(tenant["id"]) == 1
    assert int(Tenant.get(tenant["id"], consistent_read=True).rule_version) == 1


def test_a_directory_record_is_written_while_pairings_check_it(api, tenant, conflicts_ahead):
    conflicts_ahead("PutItem", 2, touching="directory_records")

    put = api("PUT", "/v1/directory/company/c-1", key=tenant["key"], json_body={"name": "Acme"})

    assert put.status == 200 and put.json["name"] == "Acme", put
    assert DirectoryRecord.get(tenant["id"], record_key("company", "c-1")).version == 1


def test_a_refresh_goes_through_a_conflict_on_the_mailbox_item(api, tenant, conflicts_ahead):
    make_mailbox(tenant["id"], "mbx_busy")
    conflicts_ahead("UpdateItem", 2, touching="mailboxes")

    assert api("POST", "/v1/mailboxes/mbx_busy/refresh", key=tenant["key"]).status == 202


def test_two_copies_of_a_message_are_linked_once_each_through_conflicts(aws, conflicts_ahead):
    """Both copies' transactions update the Message-ID's thread marker and check the record: one conflicts."""
    tenant_id = pf.make_tenant()
    directory.put_record(tenant_id, "company", "c-1", {"name": "Customer", "domains": ["customer.example"]})
    copies = [pf.make_message(pf.make_mailbox(tenant_id, email=f"{who}@acme-crm.example"), rfc_id="same@x.example")
              for who in ("alice", "bob")]
    spec = link_store.LinkSpec("company", "c-1", "auto", "sender domain", "matcher:company")
    conflicts_ahead("TransactWriteItems", 2, touching="directory_index")

    written = link_store.write_links([(copies[0], spec)], require_record=True) + \
        [link_store.write_link(copies[1], spec, require_record=True)]

    assert all(link is not None for link in written)
    for copy in copies:
        assert [link.status for link in MessageLink.query(copy.message_id)] == ["active"]
        assert int(Message.get(copy.message_id, consistent_read=True).link_count) == 1
