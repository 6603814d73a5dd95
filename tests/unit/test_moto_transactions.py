"""Guards the local stack's moto patches (infra/local_moto.py, also used by the ingest benchmark) against
changing DynamoDB's answers: a cancelled transaction leaves nothing behind, and an item over 400 KB is still
refused."""
import pytest
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.models.base import transaction_connection
from chalicelib.models.event import Event
from infra import local_moto


@pytest.fixture
def patched(aws):
    local_moto.install()   # idempotent, process-wide: every patch keeps moto's results (test_local_stack too)
    yield


def test_a_cancelled_transaction_leaves_nothing_behind(patched):
    Event("t", "kept", type="x", payload={"n": 1}, created_at="2026-01-01").save()
    Event("t", "taken", type="x", payload={}, created_at="2026-01-01").save()
    with pytest.raises(TransactWriteError):
        with TransactWrite(connection=transaction_connection()) as tx:
            tx.save(Event("t", "new", type="x", payload={}, created_at="2026-01-01"))
            tx.update(Event("t", "kept"), actions=[Event.payload.set({"n": 2})])
            tx.save(Event("t", "taken", type="y", payload={}, created_at="2026-01-01"),
                    condition=Event.event_id.does_not_exist())
    assert {e.event_id: e.payload for e in Event.query("t")} == {"kept": {"n": 1}, "taken": {}}
    with TransactWrite(connection=transaction_connection()) as tx:
        tx.save(Event("t", "new", type="x", payload={}, created_at="2026-01-01"))
        tx.update(Event("t", "kept"), actions=[Event.payload.set({"n": 2})])
    assert {e.event_id: e.payload for e in Event.query("t")} == {"kept": {"n": 2}, "taken": {}, "new": {}}


def test_items_are_still_limited_to_400_kb(patched):
    Event("t", "small", type="x", payload={"text": "a" * 300_000}, created_at="2026-01-01").save()
    with pytest.raises(PutError) as refused:
        Event("t", "big", type="x", payload={"text": "a" * 410_000}, created_at="2026-01-01").save()
    assert "Item size has exceeded the maximum allowed size" in str(refused.value)
    assert [e.event_id for e in Event.query("t")] == ["small"]



def test_the_cached_item_order_is_motos_order(patched):
    """Guards the cached, natively sorted `all_items` (scans and GSI queries walk it) against a different order."""
    from moto.backends import get_backend

    from chalicelib.models.conversation import ThreadEntry
    for tenant in ("b", "a", "c"):
        for n in (10, 2, 33, 1):
            Event(tenant, f"e{n}", type="x", payload={}, created_at="2026-01-01").save()
    for mailbox in ("m2", "m1"):
        for conversation in ("c9", "c10", "c1"):
            ThreadEntry(mailbox, conversation, tenant_id="t").save()
    tables = get_backend("dynamodb")["123456789012"]["us-east-1"].tables.values()
    checked = 0
    for table in tables:
        raw = [item for by_range in table.items.values()
               for item in (by_range.values() if table.range_key_attr else (by_range,))]
        motos_order = sorted(raw, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
        assert table.all_items() == motos_order
        checked += len(raw)
    assert checked == 18


def test_projections_answer_as_moto_does(patched):
    """Guards the fast top-level projection: same attributes and values, nested paths still moto's."""
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    table = Event.Meta.table_name
    Event("t", "p1", type="x", payload={"a": {"b": 1, "c": [1, 2]}, "z": "q"}, created_at="2026-01-01").save()
    top = client.get_item(TableName=table, Key={"tenant_id": {"S": "t"}, "event_id": {"S": "p1"}},
                          ProjectionExpression="#t, created_at, nothing_here", ExpressionAttributeNames={"#t": "type"})
    assert top["Item"] == {"type": {"S": "x"}, "created_at": {"S": "2026-01-01"}}
    listed = client.query(TableName=table, KeyConditionExpression="tenant_id = :t",
                          ExpressionAttributeValues={":t": {"S": "t"}}, ProjectionExpression="event_id, created_at")
    assert listed["Items"] == [{"event_id": {"S": "p1"}, "created_at": {"S": "2026-01-01"}}]
    client.put_item(TableName=table, Item={"tenant_id": {"S": "t"}, "event_id": {"S": "p2"},
                                           "m": {"M": {"b": {"N": "1"}, "c": {"L": [{"N": "1"}, {"N": "2"}]}}}})
    nested = client.get_item(TableName=table, Key={"tenant_id": {"S": "t"}, "event_id": {"S": "p2"}},
                             ProjectionExpression="m.b, m.c[1]")
    assert nested["Item"] == {"m": {"M": {"b": {"N": "1"}, "c": {"L": [{"N": "2"}]}}}}


def test_a_query_page_still_stops_at_1_mb(patched):
    """Guards the once-per-Query item sizes: a page still ends where DynamoDB's 1 MB limit ends it."""
    for n in range(5):
        Event("t", f"big{n}", type="x", payload={"text": "a" * 300_000}, created_at="2026-01-01").save()
    pages = Event.query("t").page_iter
    first = next(pages)
    assert len(first["Items"]) == 3 and first.get("LastEvaluatedKey")


def test_pages_of_a_gsi_query_follow_each_other_without_gap_or_overlap(patched):
    """Guards the native start-key comparison: walking pages forward and backward yields every item once."""
    from chalicelib.models.message import Message
    for n in range(23):
        Message(f"m{n:02d}", tenant_id="t", mailbox_id="mb", folder="inbox", mailbox_folder="mb#inbox",
                date_key=f"2026-11-{1 + n % 9:02d}T00:00:00Z#m{n:02d}", direction="inbound",
                date="2026-11-01T00:00:00Z", imported_at="2026-11-01T00:00:00Z").save()
    for forward in (True, False):
        seen, key = [], None
        while True:
            result = Message.by_mailbox.query("mb", scan_index_forward=forward, limit=5, last_evaluated_key=key)
            page = next(result.page_iter)
            seen += [item["message_id"]["S"] for item in page["Items"]]
            key = page.get("LastEvaluatedKey")
            if not key:
                break
        expected = sorted((f"2026-11-{1 + n % 9:02d}T00:00:00Z#m{n:02d}", f"m{n:02d}") for n in range(23))
        assert seen == [m for _, m in (expected if forward else expected[::-1])]


def test_item_responses_parse_as_botocore_parses_them(patched):
    """Guards the json.loads parse of the emulator's item responses: binaries (also nested and in sets) come
    back as bytes, numbers as DynamoDB JSON strings, and errors still raise botocore's exceptions."""
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    table = Event.Meta.table_name
    item = {"tenant_id": {"S": "t"}, "event_id": {"S": "bin"}, "raw": {"B": b"\x00\xff"},
            "set": {"BS": [b"a", b"\x01"]}, "n": {"N": "1.50"}, "ns": {"NS": ["1", "2"]}, "flag": {"BOOL": True},
            "none": {"NULL": True}, "m": {"M": {"B": {"B": b"\x02"}, "l": {"L": [{"B": b"\x03"}, {"S": "B"}]}}}}
    client.put_item(TableName=table, Item=item)
    got = client.get_item(TableName=table, Key={"tenant_id": {"S": "t"}, "event_id": {"S": "bin"}})
    assert got["Item"]["raw"] == {"B": b"\x00\xff"} and got["Item"]["m"] == item["m"]
    assert sorted(got["Item"]["set"]["BS"]) == sorted(item["set"]["BS"])
    assert {k: v for k, v in got["Item"].items() if k not in ("set", "ns")} == \
        {k: v for k, v in item.items() if k not in ("set", "ns")}
    assert sorted(got["Item"]["ns"]["NS"]) == ["1", "2"]
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(event_id)")


def test_a_kept_condition_is_evaluated_against_each_item(patched):
    """Guards the parsed-expression cache: the same condition text still decides per item and per value."""
    fresh = Event.event_id.does_not_exist()
    Event("t", "c1", type="x", payload={}, created_at="2026-01-01").save(condition=fresh)
    Event("t", "c2", type="x", payload={}, created_at="2026-01-01").save(condition=fresh)
    with pytest.raises(PutError):
        Event("t", "c1", type="y", payload={}, created_at="2026-01-01").save(condition=Event.event_id.does_not_exist())
    Event("t", "c1", type="z", payload={}, created_at="2026-01-01").save(condition=Event.type == "x")
    with pytest.raises(PutError):
        Event("t", "c1", type="w", payload={}, created_at="2026-01-01").save(condition=Event.type == "x")
    assert Event.get("t", "c1").type == "z"


def test_a_kept_update_expression_is_resolved_against_each_item(patched):
    """Guards the parsed-UpdateExpression cache and the once-checked expression: the same text still reads each
    item's own values, and a key attribute or overlapping path is refused every time, not only the first."""
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    table = Event.Meta.table_name
    for event_id, start in (("u1", None), ("u2", "5")):
        item = {"tenant_id": {"S": "t"}, "event_id": {"S": event_id}}
        if start is not None:
            item["n"] = {"N": start}
        client.put_item(TableName=table, Item=item)
    update = {"UpdateExpression": "SET #n = if_not_exists(#n, :zero) + :one, "
                                  "#l = list_append(if_not_exists(#l, :e), :x)",
              "ExpressionAttributeNames": {"#n": "n", "#l": "l"},
              "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}, ":e": {"L": []},
                                            ":x": {"L": [{"S": "x"}]}}}
    for event_id in ("u1", "u2", "u2"):
        client.update_item(TableName=table, Key={"tenant_id": {"S": "t"}, "event_id": {"S": event_id}}, **update)
    got = {i["event_id"]["S"]: (i["n"]["N"], len(i["l"]["L"])) for i in client.scan(TableName=table)["Items"]}
    assert got == {"u1": ("1", 1), "u2": ("7", 2)}
    key = {"tenant_id": {"S": "t"}, "event_id": {"S": "u1"}}
    for names in ({"#n": "n"}, {"#n": "event_id"}, {"#n": "n"}, {"#n": "event_id"}):
        call = lambda: client.update_item(TableName=table, Key=key, UpdateExpression="SET #n = :one",  # noqa: E731
                                          ExpressionAttributeNames=names,
                                          ExpressionAttributeValues={":one": {"N": "1"}})
        if names["#n"] == "event_id":
            with pytest.raises(client.exceptions.ClientError, match="key"):
                call()
        else:
            call()
    for _ in range(2):
        with pytest.raises(client.exceptions.ClientError, match="overlap|Two document paths"):
            client.update_item(TableName=table, Key=key, UpdateExpression="SET a.b = :one, a = :one",
                               ExpressionAttributeValues={":one": {"N": "1"}})


def test_a_transaction_condition_is_decided_per_item(patched):
    """Guards the kept condition parse inside transactions: the same condition passes on one item and cancels
    the transaction on another, and the request's unused-names check still runs."""
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    table = Event.Meta.table_name
    for event_id, flag in (("c1", None), ("c2", "yes")):
        item = {"tenant_id": {"S": "t"}, "event_id": {"S": event_id}}
        if flag:
            item["counted"] = {"S": flag}
        client.put_item(TableName=table, Item=item)

    def count(event_id):
        return {"Update": {"TableName": table, "Key": {"tenant_id": {"S": "t"}, "event_id": {"S": event_id}},
                           "UpdateExpression": "SET #c = :yes", "ConditionExpression": "attribute_not_exists(#c)",
                           "ExpressionAttributeNames": {"#c": "counted"},
                           "ExpressionAttributeValues": {":yes": {"S": "yes"}}}}
    client.transact_write_items(TransactItems=[count("c1")])
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=[count("c2")])
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=[count("c1")])
    unused = count("c2")
    unused["Update"]["ExpressionAttributeNames"]["#unused"] = "x"
    for _ in range(2):
        with pytest.raises(client.exceptions.ClientError, match="unused"):
            client.transact_write_items(TransactItems=[unused])


def test_an_update_on_a_table_with_a_stream_still_records_the_old_image(patched):
    """Guards the skipped copy of the item before an UpdateItem: a table with a stream still gets it."""
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="streamed", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST",
                        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    client.put_item(TableName="streamed", Item={"k": {"S": "a"}, "v": {"N": "1"}})
    client.update_item(TableName="streamed", Key={"k": {"S": "a"}}, UpdateExpression="SET v = :two",
                       ExpressionAttributeValues={":two": {"N": "2"}})
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    shard = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table("streamed").stream_shard
    modify = [r.record["dynamodb"] for r in shard.items if r.record["eventName"] == "MODIFY"]
    assert modify and modify[0]["OldImage"]["v"] == {"N": "1"} and modify[0]["NewImage"]["v"] == {"N": "2"}


def test_binary_values_in_requests_reach_the_table_as_bytes(patched):
    """Guards the json.loads parse of item requests: binaries in keys, items and expression values are decoded
    as moto's shape-driven parser decodes them."""
    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    table = Event.Meta.table_name
    key = {"tenant_id": {"S": "t"}, "event_id": {"S": "b"}}
    client.put_item(TableName=table, Item={**key, "raw": {"B": b"\x00\x01"}, "set": {"BS": [b"\xff"]}})
    client.update_item(TableName=table, Key=key, UpdateExpression="SET tag = :t", ConditionExpression="#r = :b",
                       ExpressionAttributeNames={"#r": "raw"},
                       ExpressionAttributeValues={":t": {"S": "ok"}, ":b": {"B": b"\x00\x01"}})
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.update_item(TableName=table, Key=key, UpdateExpression="SET tag = :t", ConditionExpression="#r = :b",
                           ExpressionAttributeNames={"#r": "raw"},
                           ExpressionAttributeValues={":t": {"S": "no"}, ":b": {"B": b"\x00\x02"}})
    got = client.get_item(TableName=table, Key=key)["Item"]
    assert got["tag"] == {"S": "ok"} and got["raw"] == {"B": b"\x00\x01"} and got["set"] == {"BS": [b"\xff"]}


def _gsi_table(client, name):
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gh", "gr")],
        GlobalSecondaryIndexes=[{"IndexName": "by_g", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "gh", "KeyType": "HASH"},
                                               {"AttributeName": "gr", "KeyType": "RANGE"}]}])


def _all_pages(client, **query):
    pages, key = [], None
    while True:
        page = client.query(**query, **({"ExclusiveStartKey": key} if key else {}))
        pages.append([(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]])
        key = page.get("LastEvaluatedKey")
        if not key:
            return pages


def test_partition_queries_answer_as_moto_walking_the_whole_table(patched, monkeypatch):
    """Guards the per-partition Query (`_IndexOrder`): after random puts, updates that move an item between
    index partitions or out of the index, deletes, batch writes and cancelled transactions, every page of every
    index and table Query equals what moto answers walking the whole table."""
    import random

    import boto3
    client = boto3.client("dynamodb", region_name="us-east-1")
    _gsi_table(client, "orders")
    rng = random.Random(7)
    keys = [(f"p{rng.randrange(4)}", f"s{n:03d}") for n in range(60)]

    def key(pk, sk):
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    queries = [dict(IndexName="by_g", KeyConditionExpression="gh = :h", ExpressionAttributeValues={":h": {"S": h}},
                    Limit=limit, ScanIndexForward=forward)
               for h in ("a", "b", "c") for limit in (3, 100) for forward in (True, False)]
    queries += [dict(IndexName="by_g", KeyConditionExpression="gh = :h AND gr > :r", Limit=4,
                     ExpressionAttributeValues={":h": {"S": "a"}, ":r": {"S": "r4"}}),
                dict(IndexName="by_g", KeyConditionExpression="gh = :h", FilterExpression="attribute_exists(x)",
                     Limit=5, ExpressionAttributeValues={":h": {"S": "b"}})]
    queries += [dict(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": p}}, Limit=7,
                     ScanIndexForward=forward) for p in ("p0", "p1", "p3") for forward in (True, False)]

    def answers():
        return [_all_pages(client, TableName="orders", **q) for q in queries]

    for step in range(300):
        pk, sk = rng.choice(keys)
        op = rng.random()
        if op < 0.35:
            item = {**key(pk, sk), "gh": {"S": rng.choice("abc")}, "gr": {"S": f"r{rng.randrange(9)}"}}
            if rng.random() < 0.3:
                item["x"] = {"N": "1"}
            if rng.random() < 0.1:
                del item["gr"]                           # not in the index
            client.put_item(TableName="orders", Item=item)
        elif op < 0.6:
            client.update_item(TableName="orders", Key=key(pk, sk), UpdateExpression="SET gh = :h, gr = :r",
                               ExpressionAttributeValues={":h": {"S": rng.choice("abc")},
                                                          ":r": {"S": f"r{rng.randrange(9)}"}})
        elif op < 0.7:
            client.update_item(TableName="orders", Key=key(pk, sk), UpdateExpression="REMOVE gr")
        elif op < 0.8:
            client.delete_item(TableName="orders", Key=key(pk, sk))
        elif op < 0.9:
            client.batch_write_item(RequestItems={"orders": [
                {"PutRequest": {"Item": {**key(*k), "gh": {"S": "c"}, "gr": {"S": f"r{step % 9}"}}}}
                for k in dict.fromkeys(rng.sample(keys, 3))]})
        else:
            other = rng.choice(keys)
            with pytest.raises(client.exceptions.TransactionCanceledException):
                client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": "orders", "Key": key(pk, sk), "UpdateExpression": "SET gh = :h",
                                "ExpressionAttributeValues": {":h": {"S": "a"}}}},
                    {"ConditionCheck": {"TableName": "orders", "Key": key(*other) if other != (pk, sk) else
                                        key("none", "none"), "ConditionExpression": "attribute_exists(nothing)"}}])
        if step % 25 == 24:
            fast = answers()
            monkeypatch.setattr(local_moto._IndexOrder, "partition", classmethod(lambda *a: None))
            walked = answers()
            monkeypatch.undo()
            assert fast == walked, step
    assert any(len(pages) > 1 for pages in fast)     # pagination was exercised


def test_sending_to_sqs_does_not_count_the_queue_but_its_attributes_still_do(patched, monkeypatch):
    """Guards the SQS send patch: a send no longer walks every message of the queue (a tick of 10,000 jobs was
    quadratic), while GetQueueAttributes still counts them and content-based deduplication still applies."""
    import boto3
    from moto.sqs import models as sqs_models
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="counted")["QueueUrl"]
    for n in range(5):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": f"{n}-{i}", "DelaySeconds": 60}
                                                        for i in range(10)])
    looked_at = []
    visible = sqs_models.Message.visible
    monkeypatch.setattr(sqs_models.Message, "visible", property(lambda m: looked_at.append(m) or visible.fget(m)))
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": f"x-{i}"} for i in range(10)])
    assert looked_at == []
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesDelayed"]) == ("10", "50")
    fifo = sqs.create_queue(QueueName="once.fifo", Attributes={"FifoQueue": "true",
                                                              "ContentBasedDeduplication": "true"})["QueueUrl"]
    for _ in range(2):
        sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
    got = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["same"]
