"""Guards the cost model's item sizes (bench/cost/meter.py) against drifting from DynamoDB's documented rules
("DynamoDB item sizes and formats", DynamoDB Developer Guide): names and values in UTF-8, numbers by significant
digits, binaries by raw length, 1 byte for null and Boolean, 3 bytes per list or map and 1 per element."""
import base64

from bench.cost.meter import item_bytes


def test_strings_and_names_count_their_utf8_bytes():
    assert item_bytes({"pk": {"S": "abc"}}) == 2 + 3
    assert item_bytes({"näme": {"S": "žluť"}}) == 5 + 6


def test_numbers_count_one_byte_per_two_significant_digits_plus_one():
    assert item_bytes({"n": {"N": "7"}}) == 1 + 2
    assert item_bytes({"n": {"N": "1234"}}) == 1 + 3
    assert item_bytes({"n": {"N": "12345"}}) == 1 + 4
    assert item_bytes({"n": {"N": "1000"}}) == item_bytes({"n": {"N": "1"}})        # trailing zeroes trimmed
    assert item_bytes({"n": {"N": "0.00125"}}) == item_bytes({"n": {"N": "125"}})  # leading ones too
    assert item_bytes({"n": {"N": "-1.5E+3"}}) == 1 + 2


def test_binaries_count_raw_bytes_and_null_and_booleans_one_byte():
    raw = bytes(range(30))
    assert item_bytes({"b": {"B": raw}}) == 1 + 30
    assert item_bytes({"b": {"B": base64.b64encode(raw).decode()}}) == 1 + 30
    assert item_bytes({"t": {"BOOL": True}, "z": {"NULL": True}}) == 2 + 2


def test_lists_and_maps_add_three_bytes_and_one_per_element():
    assert item_bytes({"l": {"L": []}}) == 1 + 3
    assert item_bytes({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert item_bytes({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_bytes({"s": {"SS": ["a", "bc"]}}) == 1 + 3


def test_an_item_is_smaller_than_its_json():
    item = {"tenant_id": {"S": "tnt_1"}, "mailbox_id": {"S": "mbx_1"}, "count": {"N": "42"},
            "folders": {"L": [{"S": "inbox"}, {"S": "sent"}]}}
    assert item_bytes(item) == (9 + 5) + (10 + 5) + (5 + 2) + (7 + 3 + 6 + 5) and item_bytes(item) < len(str(item))


def test_index_writes_follow_the_documented_rules():
    """Guards the meter's global secondary index writes ("Global secondary indexes: writes", DynamoDB Developer
    Guide): none outside the index, one to add, drop or re-project an entry, two when its key changes."""
    from bench.cost.meter import _index_write_units
    keys, gsi = ["pk"], ["owner"]
    old = {"pk": {"S": "m1"}, "owner": {"S": "u1"}, "count": {"N": "1"}}
    assert _index_write_units(keys, gsi, "ALL", [], {}, {"pk": {"S": "m1"}}) == 0          # never in the index
    assert _index_write_units(keys, gsi, "ALL", [], {}, old) == 1                          # a new entry
    assert _index_write_units(keys, gsi, "ALL", [], old, {}) == 1                          # deleted
    assert _index_write_units(keys, gsi, "ALL", [], old, {**old, "count": {"N": "2"}}) == 1   # re-projected
    assert _index_write_units(keys, gsi, "KEYS_ONLY", [], old, {**old, "count": {"N": "2"}}) == 0
    assert _index_write_units(keys, gsi, "INCLUDE", ["count"], old, {**old, "count": {"N": "2"}}) == 1
    assert _index_write_units(keys, gsi, "ALL", [], old, {**old, "owner": {"S": "u2"}}) == 2  # key moved
    big = {**old, "blob": {"S": "x" * 3000}}
    assert _index_write_units(keys, gsi, "ALL", [], old, big) == 3                         # 3 KB entry
    assert _index_write_units(keys, gsi, "KEYS_ONLY", [], old, {**big, "owner": {"S": "u2"}}) == 2


def indexed_table(dynamodb, name: str) -> None:
    """A table keyed on `pk` with one ALL-projection index on `owner`."""
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "owner", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          GlobalSecondaryIndexes=[{"IndexName": "by_owner",
                                                   "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                                                   "Projection": {"ProjectionType": "ALL"}}])


def test_the_meter_bills_the_index_entries_a_put_creates(aws):
    """A put into a table with an ALL-projection index costs its own units plus the index entry's."""
    import boto3

    from bench.cost.meter import Meter
    dynamodb = boto3.client("dynamodb")
    indexed_table(dynamodb, "metered")
    meter = Meter()
    try:
        dynamodb.put_item(TableName="metered", Item={"pk": {"S": "a"}, "owner": {"S": "u1"}, "x": {"S": "y" * 1500}})
        dynamodb.put_item(TableName="metered", Item={"pk": {"S": "b"}, "x": {"S": "y"}})     # not indexed
        dynamodb.update_item(TableName="metered", Key={"pk": {"S": "a"}}, UpdateExpression="SET #o = :o",
                             ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":o": {"S": "u2"}})
    finally:
        meter.close()
    assert meter.usage.wru_put == 2 + 1
    assert meter.usage.wru_index == 2 + (2 + 2)          # the new entry; then the old deleted, the new put
    assert meter.usage.calls[("dynamodb", "GetItem")] == 0     # the meter's own reads are not metered


def test_the_ledger_itemizes_every_write_with_its_index_units(aws):
    """Guards `bench.cost --breakdown`: each item a write touches is listed with its table, how it was written,
    its size before and after, its units (twice in a transaction) and its index writes per GSI."""
    import boto3

    from bench.cost.meter import Meter
    dynamodb = boto3.client("dynamodb")
    indexed_table(dynamodb, "ledgered")
    meter = Meter()
    meter.ledger = []
    try:
        dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": "ledgered", "Item": {
            "pk": {"S": "a"}, "owner": {"S": "u1"}, "x": {"S": "y" * 1500}}}}])
        dynamodb.update_item(TableName="ledgered", Key={"pk": {"S": "a"}}, UpdateExpression="SET #x = :x",
                             ExpressionAttributeNames={"#x": "x"}, ExpressionAttributeValues={":x": {"S": "z"}})
    finally:
        meter.close()
    put, update = meter.ledger
    assert (put.table, put.action, put.key, put.bytes_before) == ("ledgered", "TransactWriteItems.Put", "a", 0)
    assert put.table_wru() == 2 * 2 and put.index_wru == {"by_owner": 2}
    assert (update.action, update.attributes, update.bytes_after) == ("UpdateItem", ("x",), 2 + 1 + 5 + 2 + 1 + 1)
    assert update.table_wru() == 2 and update.table_wru({"ledgered": 0.3}) == 1 and update.index_wru == {"by_owner": 1}


def test_a_transactions_condition_check_is_billed_as_a_write_of_the_item(aws):
    """A ConditionCheck in TransactWriteItems writes nothing yet is billed as a transactional write of the item it
    checks (2 WRU per KB, measured against DynamoDB; see `Meter._dynamodb`), no read; the ledger lists it."""
    import boto3

    from bench.cost.meter import Meter
    dynamodb = boto3.client("dynamodb")
    indexed_table(dynamodb, "checked")
    dynamodb.put_item(TableName="checked", Item={"pk": {"S": "guard"}, "owner": {"S": "u1"}, "n": {"N": "1"}})
    meter = Meter()
    meter.ledger = []
    try:
        dynamodb.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": "checked", "Key": {"pk": {"S": "guard"}},
                                "ConditionExpression": "#n = :n", "ExpressionAttributeNames": {"#n": "n"},
                                "ExpressionAttributeValues": {":n": {"N": "1"}}}},
            {"Put": {"TableName": "checked", "Item": {"pk": {"S": "b"}}}}])
    finally:
        meter.close()
    assert meter.usage.rru == 0
    assert meter.usage.wru({"checked": 0.1}) == 2 + 2 and meter.usage.wru_index == 0
    check, put = meter.ledger
    assert (check.action, check.key, check.table_wru({"checked": 0.1}), check.index_wru) == (
        "TransactWriteItems.ConditionCheck", "guard", 2, {})


def test_the_fake_providers_cpu_is_told_apart_from_the_workers():
    """Guards `bench.cost.server_cpu`: a fake's request handling (its own threads) is counted, so the cost model
    can leave it out of the Lambda time; the caller's own work is not."""
    import threading
    import time
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench.cost import server_cpu

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self):
            started = time.thread_time()
            while time.thread_time() - started < 0.05:      # 50 ms of the fake's CPU
                pass
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    with server_cpu.measuring():
        server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
        thread = threading.Thread(target=server.serve_forever, name="fake-google", daemon=True)
        thread.start()
        try:
            before = server_cpu.spent()
            for _ in range(3):
                urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/").close()
            deadline = time.monotonic() + 5     # a request thread adds its CPU after the answer has left it
            while server_cpu.spent() - before < 0.15 and time.monotonic() < deadline:
                time.sleep(0.01)
            fakes = server_cpu.spent() - before
            mine = time.thread_time()
            while time.thread_time() - mine < 0.05:             # the caller's own CPU is not the fake's
                pass
            assert 0.15 <= fakes < 0.3
            assert server_cpu.spent() - before - fakes < 0.02
        finally:
            server.shutdown()
            server.server_close()
