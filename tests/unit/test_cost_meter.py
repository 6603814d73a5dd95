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
