"""Guards the stored form of a `Message` (models/message.py): attributes holding their default are not written
and JSON attributes are compact — fewer bytes in the table and in each index that projects the item whole —
while an item of the earlier form (every attribute, JSON with blanks, `rfc_key`) reads exactly as before, and
the listing's filters treat an absent `hidden` / `link_count` as their defaults (moto)."""
from __future__ import annotations

import json

import boto3

from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import OMITTED_WHEN_DEFAULT, Message
from chalicelib.messages.service import list_messages
from tests.unit.test_message_store import fetched, make_mailbox
from tests.mailfactory import make_message
from chalicelib.sync import store


def _raw(message_id: str) -> dict:
    return boto3.client("dynamodb").get_item(TableName=Message.Meta.table_name,
                                             Key={"message_id": {"S": message_id}}, ConsistentRead=True)["Item"]


def test_defaults_are_not_written_and_read_back_as_defaults(aws):
    mailbox = make_mailbox()
    saved = store.save_fetched(mailbox, fetched(make_message(subject="Plain", body="text")))
    raw = _raw(saved.message.message_id)
    assert set(OMITTED_WHEN_DEFAULT) & set(raw) == {"to"}, sorted(raw)      # the one not empty
    assert "rfc_key" not in raw
    assert raw["from_addr"]["S"] == json.dumps(saved.message.from_addr, separators=(",", ":"))
    message = Message.get(saved.message.message_id)
    assert (message.references, message.cc, message.bcc, message.reply_to, message.attachments) == ([],) * 5
    assert message.headers == {} and message.parse_errors == [] and message.link_count == 0
    assert message.hidden is False and message.has_attachments is False
    assert message.to == saved.message.to != []


def test_values_other_than_the_default_are_written(aws):
    mailbox = make_mailbox()
    raw_mail = make_message(subject="With file", attachments=[("a.pdf", "application/pdf", b"%PDF-1")])
    saved = store.save_fetched(mailbox, fetched(raw_mail))
    item = Message.get(saved.message.message_id)
    item.hidden, item.link_count = True, 2
    item.save()
    raw = _raw(item.message_id)
    assert raw["hidden"] == {"BOOL": True} and raw["link_count"] == {"N": "2"}
    assert raw["has_attachments"] == {"BOOL": True} and json.loads(raw["attachments"]["S"])
    assert Message.get(item.message_id).attachments == item.attachments


def test_an_item_of_the_earlier_form_reads_as_before(aws):
    """Every attribute written, JSON with blanks (`json.dumps` defaults), the `rfc_key` nothing reads."""
    make_mailbox()
    old = {"message_id": {"S": "msg_old"}, "tenant_id": {"S": "ten_1"}, "mailbox_id": {"S": "mbx_1"},
           "folder": {"S": "inbox"}, "mailbox_folder": {"S": "mbx_1#inbox"},
           "date_key": {"S": "2026-11-20T10:00:00Z#msg_old"}, "direction": {"S": "inbound"},
           "rfc_message_id": {"S": "a@b.example"}, "rfc_key": {"S": "ten_1#a@b.example"},
           "references": {"L": []}, "subject": {"S": "Old"},
           "from_addr": {"S": json.dumps({"name": "Jan Novák", "email": "jan@acme.example"})},
           "to": {"S": json.dumps([{"name": "", "email": "alice@example.com"}])}, "cc": {"S": "[]"},
           "bcc": {"S": "[]"}, "reply_to": {"S": "[]"}, "date": {"S": "2026-11-20T10:00:00Z"}, "size": {"N": "10"},
           "has_attachments": {"BOOL": False}, "attachments": {"S": "[]"}, "headers": {"S": "{}"},
           "parse_errors": {"L": []}, "hidden": {"BOOL": False}, "link_count": {"N": "0"},
           "imported_at": {"S": "2026-11-20T10:00:01Z"}}
    boto3.client("dynamodb").put_item(TableName=Message.Meta.table_name, Item=old)
    message = Message.get("msg_old")
    assert message.from_addr == {"name": "Jan Novák", "email": "jan@acme.example"}
    assert message.to == [{"name": "", "email": "alice@example.com"}] and message.cc == []
    assert message.hidden is False and message.link_count == 0 and message.headers == {}


def test_listing_filters_treat_absent_attributes_as_their_defaults(aws):
    mailbox = make_mailbox()
    shown = store.save_fetched(mailbox, fetched(make_message(subject="Shown", message_id="<s@x.example>"),
                                                uid="7:1")).message
    hidden = store.save_fetched(mailbox, fetched(make_message(subject="Hidden", message_id="<h@x.example>"),
                                                 uid="7:2")).message
    Message(hidden.message_id).update(actions=[Message.hidden.set(True)])
    box = Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id)
    for folder in (None, "inbox"):
        listed, _ = list_messages(box, folder=folder, paired=None, limit=10, start_key=None)
        assert [m.message_id for m in listed] == [shown.message_id]
        unpaired, _ = list_messages(box, folder=folder, paired=False, limit=10, start_key=None)
        assert [m.message_id for m in unpaired] == [shown.message_id]
        paired, _ = list_messages(box, folder=folder, paired=True, limit=10, start_key=None)
        assert paired == []


def test_the_raw_key_is_derived_not_stored_and_stored_keys_still_read(aws):
    mailbox = make_mailbox()
    saved = store.save_fetched(mailbox, fetched(make_message(subject="Raw")))
    raw = _raw(saved.message.message_id)
    assert "raw_s3_key" not in raw and raw["raw_sha256"]
    message = Message.get(saved.message.message_id)
    assert message.raw_s3_key == f"raw/ten_1/mbx_1/{message.message_id}.eml" == saved.message.raw_s3_key
    assert store.load_raw(message)                          # the object is where the key says
    skipped = store.save_fetched(mailbox, fetched(None, uid="7:9", skipped="too_large", size=10))
    assert Message.get(skipped.message.message_id).raw_s3_key is None
    partial = Message.get(saved.message.message_id, attributes_to_get=["message_id", "tenant_id"])
    assert partial.raw_s3_key is None                       # read without raw_sha256, as without raw_s3_key
    boto3.client("dynamodb").update_item(TableName=Message.Meta.table_name,
                                         Key={"message_id": {"S": message.message_id}},
                                         UpdateExpression="SET raw_s3_key = :k",
                                         ExpressionAttributeValues={":k": {"S": "raw/elsewhere.eml"}})
    assert Message.get(message.message_id).raw_s3_key == "raw/elsewhere.eml"    # a stored key wins
    moved = Message.get(message.message_id)
    moved.save()
    assert _raw(message.message_id)["raw_s3_key"] == {"S": "raw/elsewhere.eml"}  # and is kept
