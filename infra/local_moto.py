"""Makes the in-process moto of the local stack keep up with a real mailbox (thousands of messages).

Profiled with py-spy on the local stack importing a 5,000-message IMAP account (docs/benchmarks.md, "Local
stack"), moto itself was where time and memory went, not mailbridge:

- `TransactWriteItems` deep-copied every table a transaction touches, as a rollback backup — the whole
  Messages table for every link, effect or counter transaction: O(table) CPU and garbage per call, the
  process's memory growth. Here the backup is the touched items only (a transaction writes ≤ 100 items).
- A GSI `Query` sorted *all* items of the table (`Table.all_items`) before filtering on the index's hash key,
  O(n log n) per query with Python-level comparisons. Here the sorted list is cached per table and rebuilt
  only after an item is added or deleted (updates never change an item's key), and the matches are sorted
  on precomputed keys (Queries themselves now get only their partition: below).
- Responses went through moto's generic model-driven serializer (about 10× slower than `json.dumps` for
  item-heavy responses). Responses of the item operations are DynamoDB JSON already
  (`moto.dynamodb.models.utilities.dynamo_to_dict`), so they are dumped directly: the wire format is the same
  (AWS JSON 1.0; binary values base64, as the DynamoDB API reference, "Data types", specifies).
- moto kept a reference to every model object it ever created (see `_stop_instance_tracking`): the process
  grew without bound, fastest while messages were listed.
- Building an item re-measured the whole item for each attribute it added (moto's `LimitedSizeDict`, a
  400 KB guard): O(attributes²) per PutItem, 14 of 16 s of the puts in a 1,000-message import. Here the item
  is measured once, with the same limit and the same error.
- moto is not thread-safe (the API, the worker and the notifier call it at once; a Query copying an item
  another thread updated failed with a 500): every DynamoDB request runs under one lock, so conditional
  writes and transactions are atomic as in DynamoDB, and `local_state` can take a consistent cut by holding
  the same lock.

- A projection (`ProjectionExpression`, as message lists send) converted the whole item to plain JSON once per
  projected name: an 18-name projection tripled a list's CPU. Top-level names are picked directly here.
- Every conditional write and filtered query parsed its expression again for each item (the same
  `attribute_not_exists(...)` 99 times per insert transaction); parsed expressions are kept.
- A Query measured every returned item twice for its 1 MB page limit; here once per Query. Reaching a later
  page compared every earlier item with the start key through freshly built DynamoTypes; strings compare
  natively here.
- botocore parsed those responses again by walking the output shape member by member (a quarter of a list's
  CPU); they are read with `json.loads` here, binaries decoded (`_patch_response_parser`).
- moto's S3 backend re-imported its URL module (`importlib.reload(moto.s3.urls)`) on every request, a quarter
  of an in-process PutObject; the module is loaded once here (its table depends on environment variables the
  local stack sets before it starts).

- Every UpdateItem (and each Update of a transaction) parsed its UpdateExpression again, parsed its condition
  again after the transaction had already checked it, deep-copied the AST for its validator, ran ten
  validator passes that each rebuilt their dispatch table per node, and deep-copied the whole item for a
  stream the table does not have: a conversation-counting transaction of 100 updates cost ~3 s of CPU. Here
  parsed expressions are kept, the expression-only validator passes run once per expression, the AST copy
  is unpickled, the dispatch tables are built once and the stream-only copy is skipped when there is no
  stream (32 → 13 ms of notifier CPU a message).
- Item requests were parsed by walking the input shape; they are read with `json.loads` (binaries decoded).
- A Query walked the whole table to find its partition and a GSI Query then sorted the partition; here it
  gets the partition only, a GSI's kept in moto's order by every write (`_IndexOrder`).

- SQS: sending a message read the queue's whole attribute map for one setting (`ContentBasedDeduplication`),
  and that map counts the queue's messages one by one three times — O(queue) per message, so a scheduler tick
  queueing 10,000 jobs took ~13 minutes (quadratic: 2,000 jobs 32 s). While a message is being sent, the three
  approximate counts read 0 here (sending never uses them; `GetQueueAttributes` still counts).

It also records which items changed (`DirtyItems`), so snapshots write only those (`infra/local_state.py`).
Emulator only: this patches moto classes of the local stack's own process (moto 5.2) and is never imported
by the service.
"""
from __future__ import annotations

import base64
import bisect
import copy
import datetime as dt
import json
import threading
from typing import Any

WRITE_LOCK = threading.RLock()
_installed = False

# Operations whose moto result is plain DynamoDB JSON (after `dynamo_to_dict`).
FAST_JSON_HEADER = "x-local-dynamodb-json"     # marks those responses for `_patch_response_parser`
FAST_JSON_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem",
                                  "DeleteItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems"})


class DirtyItems:
    """(table name, hash key, range key) of every item written since the last `drain()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[str, Any, Any]] = set()

    def mark(self, table_name: str, hash_key, range_key) -> None:
        with self._lock:
            self._keys.add((table_name, hash_key, range_key))

    def drain(self) -> set[tuple[str, Any, Any]]:
        with self._lock:
            keys, self._keys = self._keys, set()
        return keys

    def __len__(self) -> int:
        return len(self._keys)


DIRTY = DirtyItems()


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, set):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def install() -> None:
    """Patch moto's DynamoDB, S3 and SQS (idempotent)."""
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    from moto.dynamodb.models.dynamo_type import DynamoType
    _stop_instance_tracking()
    _patch_string_equality(DynamoType)
    _load_s3_urls_once()
    _patch_item_construction(Item)
    _patch_projection(Item)
    _patch_item_size(Item)
    _patch_condition_parsing()
    _patch_update_parsing()
    _patch_serializer(DynamoResult)
    _patch_response_parser()
    _patch_request_parser(DynamoHandler)
    _lock_requests(DynamoHandler)
    _patch_table(Table)
    _patch_backend(DynamoDBBackend)
    _patch_sqs_send()
    import moto.dynamodb.models as models_module
    import moto.dynamodb.models.table as table_module
    models_module.copy = _CopyWithoutTables(Table, Item)
    table_module.copy = _QueryResultsNotCopied(Item)
    _installed = True


_QUEUE_COUNTS = ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
                 "approximate_number_of_messages_not_visible")


def _patch_sqs_send() -> None:
    """`send_message` (and so `send_message_batch`) without counting the queue's messages for each one."""
    from moto.sqs.models import Queue, SQSBackend
    sending = threading.local()

    def uncounted_while_sending(count: property) -> property:
        return property(lambda queue: 0 if getattr(sending, "on", False) else count.fget(queue))

    for name in _QUEUE_COUNTS:
        setattr(Queue, name, uncounted_while_sending(getattr(Queue, name)))
    original = SQSBackend.send_message

    def send_message(self, *args, **kwargs):
        sending.on = True
        try:
            return original(self, *args, **kwargs)
        finally:
            sending.on = False

    SQSBackend.send_message = send_message


def _patch_string_equality(dynamo_type) -> None:
    """`DynamoType ==` / `!=` compare `cast_value`, a property that tries every other type first; for a string
    or binary (every key mailbridge declares, and what a GSI Query compares per candidate) `cast_value` is the
    value itself, so the values are compared directly. Every other type keeps moto's comparison."""
    eq, ne = dynamo_type.__eq__, dynamo_type.__ne__

    def __eq__(self, other):
        kind = self.type
        if (kind == "S" or kind == "B") and kind == getattr(other, "type", None):
            return self.value == other.value
        return eq(self, other)

    def __ne__(self, other):
        kind = self.type
        if (kind == "S" or kind == "B") and kind == getattr(other, "type", None):
            return self.value != other.value
        return ne(self, other)

    dynamo_type.__eq__, dynamo_type.__ne__ = __eq__, __ne__     # assigned after the class: __hash__ stays


def _load_s3_urls_once() -> None:
    import moto.s3.urls as urls_module
    from moto.s3.models import S3Backend
    S3Backend._url_module = property(lambda self: urls_module)


def _stop_instance_tracking() -> None:
    """moto's `BaseModel.__new__` appends every model object ever created — each DynamoDB item, and each deep
    copy of one that a Query, Scan, UpdateItem or transaction makes, each S3 key, each SQS message — to a
    per-class list that only a reset empties (it feeds moto's `/moto-api/data.json` dashboard). In a
    long-running emulator that list is a leak: ~4 KB retained per item a Query returns."""
    from moto.core.common_models import BaseModel

    def __new__(cls, *args, **kwargs):
        return super(BaseModel, cls).__new__(cls)

    BaseModel.__new__ = __new__
    for model in _tracked_classes(BaseModel):
        model.instances_tracked = []


def _patch_item_construction(item_class) -> None:
    """`Item(hash_key, range_key, attrs)` with the item's size checked once (moto checks it again after every
    attribute). The limit and error are moto's: DynamoDB's 400 KB item size ("Service, account, and table
    quotas in Amazon DynamoDB"), which moto enforces at 405,000 bytes of names and values."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def __init__(self, hash_key, range_key, attrs):
        self.hash_key, self.range_key = hash_key, range_key
        self.attrs = LimitedSizeDict()
        for key, value in attrs.items():
            dict.__setitem__(self.attrs, key, DynamoType(value))
        if sum(bytesize(key) + value.size() for key, value in self.attrs.items()) > 405000:
            raise ItemSizeTooLarge

    item_class.__init__ = __init__


_sizes = threading.local()


def _patch_item_size(item_class) -> None:
    size = item_class.size

    def remembered_size(self) -> int:
        memo = getattr(_sizes, "memo", None)
        if memo is None:
            return size(self)
        found = memo.get(id(self))
        if found is None:
            found = memo[id(self)] = (self, size(self))   # the item is held, so its id is not reused meanwhile
        return found[1]

    item_class.size = remembered_size


def _patch_condition_parsing() -> None:
    """moto parses a condition or filter expression for every item a write or query touches, and a transaction's
    condition three times (the request's validation, the transaction's check, the update it runs): a page's
    insert transaction of 99 puts parsed the same `attribute_not_exists(...)` 99 times, a conversation-counting
    transaction of 100 updates 300 times (a fifth of its CPU). Parsed expressions are kept here, keyed by the
    expression, its names and its values; evaluating one (`Op.expr(item)`) reads the item only, and each caller
    gets its own copy of the names the expression used (the request's validation compares them with the names
    sent). A malformed expression raises as before and is not kept."""
    import functools

    import moto.dynamodb.models as models_module
    import moto.dynamodb.models.table as table_module
    import moto.dynamodb.responses as responses_module
    from moto.dynamodb import comparisons

    parser_class = comparisons.ConditionExpressionParser

    @functools.lru_cache(maxsize=2048)
    def parsed(expr, names_json, values_json):
        parser = parser_class(expr, json.loads(names_json), json.loads(values_json))
        return parser.parse(), tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found)

    class ParsedCondition:
        """A `ConditionExpressionParser` whose `parse()` is kept: after it, the names and values the expression
        used (`expr_attr_names_found`, `expr_attr_values_found`) are set as moto's parser sets them."""

        def __init__(self, expr, names, values) -> None:
            self.condition_expression, self.expression_attribute_names = expr, names
            self.expression_attribute_values = values
            self.args = (expr, names, values)
            self.expr_attr_names_found: list[str] = []
            self.expr_attr_values_found: list[str] = []

        def parse(self):
            expr, names, values = self.args
            try:
                key = (expr, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True))
            except TypeError:      # not JSON (binary values): parse as moto does
                parser = parser_class(expr, names, values)
                op = parser.parse()
                self.expr_attr_names_found = parser.expr_attr_names_found
                self.expr_attr_values_found = parser.expr_attr_values_found
                return op
            op, names_found, values_found = parsed(*key)
            self.expr_attr_names_found, self.expr_attr_values_found = list(names_found), list(values_found)
            return op

    def get_filter_expression(expr, names, values):
        return ParsedCondition(expr, names, values).parse()

    models_module.get_filter_expression = get_filter_expression
    table_module.get_filter_expression = get_filter_expression
    models_module.create_condition_expression_parser = ParsedCondition
    responses_module.create_condition_expression_parser = ParsedCondition


def _patch_update_parsing() -> None:
    """moto parses an UpdateExpression on every UpdateItem (and every Update of a transaction) into an AST that
    its validator deep-copies before resolving it against the item (`Validator.__init__`): the parsed AST of an
    expression string is kept here and handed to the validator as before, which still works on its own copy.
    A malformed expression raises as before and is not kept."""
    import functools

    import moto.dynamodb.models as models_module
    import moto.dynamodb.responses as responses_module
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    class CachedUpdateExpressionParser:
        make = staticmethod(functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make))

    models_module.UpdateExpressionParser = CachedUpdateExpressionParser
    responses_module.UpdateExpressionParser = CachedUpdateExpressionParser   # the request's name check reads it
    models_module.UpdateExpressionValidator = _validator_checking_the_expression_once()
    _cache_processing_maps()


_STATIC_PROCESSORS = ("ActionCountValidator", "OverlappingPathsValidator", "UpdateHashRangeKeyValidator")


def _validator_checking_the_expression_once():
    """moto's `UpdateExpressionValidator`, cheaper for an expression it has seen:

    - it runs ten passes over the AST for each item; the first three (`_STATIC_PROCESSORS`: one clause of each
      kind, no overlapping paths, no key attribute updated) read only the expression, its attribute names and
      the table's key names, and change nothing (each returns the node it was given) — with a quadratic clause
      search, a third of the validation. Once they passed for a parsed expression (kept by
      `_patch_update_parsing`, so its identity is stable), the same names and the same table keys, later
      validations run only the item-dependent passes. A failure is not remembered.
    - the passes rewrite the AST, so moto deep-copies it for every item (`Validator.__init__`, ~0.7 ms); here
      the copy is unpickled from the kept expression's pickle (~0.1 ms), the same tree of new nodes."""
    import pickle

    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    passed: dict[tuple, Any] = {}
    pickled: dict[int, tuple[Any, bytes]] = {}

    def fresh_copy(expression):
        found = pickled.get(id(expression))
        if found is None or found[0] is not expression:
            found = (expression, pickle.dumps(expression, pickle.HIGHEST_PROTOCOL))
            if len(pickled) < 4096:
                pickled[id(expression)] = found            # held: its id is not reused meanwhile
        return pickle.loads(found[1])

    class ExpressionCheckedOnce(UpdateExpressionValidator):
        def __init__(self, expression, expression_attribute_names, expression_attribute_values, item, table):
            """`Validator.__init__` (moto 5.2), with the AST copied by `fresh_copy`."""
            try:
                names = json.dumps(expression_attribute_names, sort_keys=True)
            except TypeError:
                names = None
            self.static_key = None if names is None else (id(expression), names, tuple(table.table_key_attrs))
            self.expression = expression
            self.expression_attribute_names = expression_attribute_names
            self.expression_attribute_values = expression_attribute_values
            self.item, self.table = item, table
            self.processors = self.get_ast_processors()
            self.node_to_validate = fresh_copy(expression)

        def get_ast_processors(self):
            processors = super().get_ast_processors()
            if self.static_key is not None and self.static_key in passed:
                return [p for p in processors if type(p).__name__ not in _STATIC_PROCESSORS]
            return processors

        def validate(self):
            node = super().validate()
            if self.static_key is not None and len(passed) < 4096:
                passed[self.static_key] = self.expression     # held: its id is not reused meanwhile
            return node

    return ExpressionCheckedOnce


def _cache_processing_maps() -> None:
    """moto's AST passes (`DepthFirstTraverser`) rebuild their processing map — a dict of bound methods — and the
    tuple of node types it handles for every node they visit (the accessor's docstring says "cached"; it is
    not). Each pass's map is fixed for its life (every `_processing_map` in moto 5.2 returns a literal of the
    pass's own methods), so it is built once per pass object here."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser

    def processing_map(self):
        found = self.__dict__.get("_local_map")
        if found is None:
            found = self.__dict__["_local_map"] = self._processing_map()
        return found

    def nodes_to_be_processed(self):
        found = self.__dict__.get("_local_types")
        if found is None:
            found = self.__dict__["_local_types"] = tuple(processing_map(self).keys())
        return found

    def process(self, node):
        for class_key, processor in processing_map(self).items():
            if isinstance(node, class_key):
                return processor(node)

    DepthFirstTraverser.nodes_to_be_processed = nodes_to_be_processed
    DepthFirstTraverser.process = process


def _patch_projection(item_class) -> None:
    """`Item.project` for top-level attribute names (what PynamoDB's `attributes_to_get` sends) picks the named
    attributes; moto converted the whole item to plain JSON once per name and back (a list's 18-name projection
    tripled its CPU). Nested paths and list elements (`a.b`, `a[1]`) keep moto's own code."""
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict
    project = item_class.project

    def fast_project(self, projection_expressions):
        if any(len(path) != 1 or "[" in path[0] for path in projection_expressions):
            return project(self, projection_expressions)
        projected = item_class.__new__(item_class)
        projected.hash_key, projected.range_key = self.hash_key, self.range_key
        projected.attrs = LimitedSizeDict()
        for (name,) in projection_expressions:
            if name in self.attrs:
                dict.__setitem__(projected.attrs, name, copy.deepcopy(self.attrs[name]))
        return projected

    item_class.project = fast_project


def _tracked_classes(root) -> list:
    found, pending = [], [root]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if "instances_tracked" in cls.__dict__]


class LocalStackStopped(RuntimeError):
    """A DynamoDB call from a thread the stopping local stack has abandoned (as a stopped Lambda's would fail)."""


_ONLY_THREAD: dict[str, threading.Thread] = {}


def refuse_other_threads() -> None:
    """From now on only the calling thread reaches DynamoDB. The local stack's stop calls it once the grace
    period is over: a worker or notifier batch still running then fails at its next call (both are crash-safe:
    the message is redelivered and a replay completes what was owed) instead of holding the GIL and this lock
    while the final snapshot runs."""
    _ONLY_THREAD["thread"] = threading.current_thread()


def _lock_requests(handler_class) -> None:
    """One DynamoDB request at a time: a Query deep-copies items that an UpdateItem on another thread mutates
    in place ("dictionary changed size during iteration" answered the API with a 500). Under the GIL this
    costs next to no parallelism."""
    call_action = handler_class.call_action

    def locked_call_action(self):
        only = _ONLY_THREAD.get("thread")
        if only is not None and threading.current_thread() is not only:
            raise LocalStackStopped("the local stack is stopping")
        with WRITE_LOCK:
            return call_action(self)

    handler_class.call_action = locked_call_action


def _patch_serializer(result_class) -> None:
    generic = result_class.execute_result

    def execute_result(self, context):
        operation = str(context.operation_model.name)
        if operation not in FAST_JSON_OPERATIONS or isinstance(self.result, Exception):
            return generic(self, context)
        body = json.dumps(self.result, default=_json_default, separators=(",", ":"))
        return 200, {"Content-Type": "application/x-amz-json-1.0", FAST_JSON_HEADER: "1"}, body

    result_class.execute_result = execute_result


def _with_binaries(value: Any) -> Any:
    """DynamoDB JSON with its binary values decoded: an AttributeValue `{"B": <base64>}` or
    `{"BS": [<base64>, ...]}` (DynamoDB API reference, "AttributeValue"). Map members are AttributeValues
    (objects), so a one-key object whose "B" is a string is always a binary value."""
    if isinstance(value, dict):
        if len(value) == 1:
            if isinstance(value.get("B"), str):
                return {"B": base64.b64decode(value["B"])}
            if isinstance(value.get("BS"), list) and all(isinstance(v, str) for v in value["BS"]):
                return {"BS": [base64.b64decode(v) for v in value["BS"]]}
        return {key: _with_binaries(member) for key, member in value.items()}
    if isinstance(value, list):
        return [_with_binaries(member) for member in value]
    return value


def _patch_request_parser(handler_class) -> None:
    """moto parses a DynamoDB request by walking the operation's input shape over the decoded JSON (a sixth of
    a BatchWriteItem of search postings): its only conversions for the item operations are dropping members
    sent as `null` or unknown to the model (botocore sends neither: it serializes validated parameters) and
    decoding binary values (base64 on the wire, DynamoDB API reference, "AttributeValue"). For those
    operations the body is read with `json.loads` and the binaries decoded (`_with_binaries`); every other
    request keeps moto's parser."""
    parse_parameters = handler_class.parse_parameters

    def fast_parse_parameters(self, request):
        if self._get_action() not in FAST_JSON_OPERATIONS or not request.content_type.startswith(
                "application/x-amz-json-1.0"):
            return parse_parameters(self, request)
        body = request.data
        parsed = json.loads(body) if body else {}
        if b'"B"' in body or b'"BS"' in body:
            parsed = _with_binaries(parsed)
        self.params = parsed

    handler_class.parse_parameters = fast_parse_parameters


_response_parser_installed = False


def install_response_parser() -> None:
    """Only the client side of this module (`_patch_response_parser`), for a process whose AWS calls reach an
    emulator in another process (`infra/local_functions.py`); idempotent."""
    global _response_parser_installed
    if not _response_parser_installed:
        _patch_response_parser()
        _response_parser_installed = True


def _patch_response_parser() -> None:
    """botocore parses a JSON response by walking the output shape member by member (a quarter of a message
    list's CPU here). The item operations' responses this module serializes (`FAST_JSON_HEADER`) are DynamoDB
    JSON whose only typed values are binaries, so they are parsed with `json.loads` and the binaries decoded:
    the same dictionary botocore builds. Every other response (errors, other services, other operations)
    goes through botocore's parser."""
    from botocore import parsers
    do_parse = parsers.JSONParser._do_parse

    def fast_do_parse(self, response, shape):
        if response["headers"].get(FAST_JSON_HEADER) != "1" or shape is None or shape.event_stream_name:
            return do_parse(self, response, shape)
        body = response["body"]
        parsed = json.loads(body) if body else {}
        if b'"B":' in body or b'"BS":' in body:     # this module's serializer writes keys exactly so
            parsed = _with_binaries(parsed)
        self._inject_response_metadata(parsed, response["headers"])
        return parsed

    parsers.JSONParser._do_parse = fast_do_parse


def _patch_table(table_class) -> None:
    put_item, delete_item = table_class.put_item, table_class.delete_item

    def invalidate(table) -> None:
        table.__dict__.pop("_local_sorted_items", None)

    def cached_all_items(self):
        """moto's order — by (hash key, range key), DynamoType comparisons comparing `cast_value` — sorted on
        native keys computed once per item: re-sorting a 5,000-item table on DynamoType comparisons took about
        0.2 s, paid by every message list while a mailbox imported (each put invalidates the cache)."""
        candidates = _partition.__dict__.get("candidates")
        if candidates is not None:
            _partition.candidates = None          # the Query's one walk; a later call walks the table
            return candidates
        cached = self.__dict__.get("_local_sorted_items")
        if cached is None:
            items = [item for by_range in self.items.values()
                     for item in (by_range.values() if self.range_key_attr else (by_range,))]
            if self.range_key_attr:
                items.sort(key=lambda item: (item.hash_key.cast_value, item.range_key.cast_value))
            else:
                items.sort(key=lambda item: item.hash_key.cast_value)
            cached = items
            self.__dict__["_local_sorted_items"] = cached
        return list(cached)

    def patched_put(self, item_attrs, *args, **kwargs):
        item = put_item(self, item_attrs, *args, **kwargs)
        invalidate(self)   # a replaced item is a new object, so even an overwrite invalidates
        _IndexOrder.changed(self, item)
        DIRTY.mark(self.name, item.hash_key, item.range_key)
        return item

    def patched_delete(self, hash_key, range_key):
        item = delete_item(self, hash_key, range_key)
        if item is not None:
            invalidate(self)
            _IndexOrder.removed(self, item)
            DIRTY.mark(self.name, hash_key, range_key)
        return item

    def sorted_items(self, hash_key_attrs, range_key_attrs, items):
        """moto's order (DynamoType comparisons compare `cast_value`), with each key computed once per item
        instead of once per comparison; a partition handed over in that order already (`_IndexOrder`) is
        not sorted again."""
        if _partition.__dict__.get("in_order"):
            return items      # moto's matches: a filtered run of the ordered partition, in its order
        attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
        items.sort(key=lambda item: tuple(_sort_value(item.attrs[name]) for name in attrs))
        return items

    query = table_class.query

    def query_measuring_once(self, hash_key, *args, **kwargs):
        """moto's Query measures each item it returns twice (`Item.size`, for the 1 MB page limit; a third of
        a message list's emulator CPU): here each item is measured once per Query. Queries run under the
        request lock, so no item changes meanwhile.

        moto also walks the whole table (`all_items`) to find the queried partition — O(table) per Query, and
        a GSI Query then sorts the partition. Here moto gets the partition only: a table Query the items of
        its hash key (moto filters and sorts them as before), a GSI Query with one hash and one range key the
        index's partition in moto's order, kept up to date by every write (`_IndexOrder`). moto's own code
        still checks every condition, start key, limit and filter on what it is given."""
        _sizes.memo = {}
        _partition.candidates = _IndexOrder.partition(self, hash_key, args, kwargs)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _sizes.memo = None
            _partition.candidates = _partition.in_order = None

    comes_before = table_class._item_comes_before_dct

    def item_comes_before_dct(self, item, dct, hash_key_attrs, range_key_attrs, scan_index_forward):
        """moto's test for "this item was on an earlier page" (run on every item before a page's start key),
        comparing string keys natively instead of building DynamoTypes from the start key per item; any other
        key type goes to moto's own code, which reaches the same answer."""
        for attr in self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs):
            mine, theirs = item.attrs.get(attr), dct.get(attr)
            if mine is None:
                continue
            if mine.type != "S" or not isinstance(theirs, dict) or "S" not in theirs or len(theirs) != 1:
                return comes_before(self, item, dct, hash_key_attrs, range_key_attrs, scan_index_forward)
            if mine.value != theirs["S"]:
                return (mine.value < theirs["S"]) == scan_index_forward
        return True

    table_class._item_comes_before_dct = item_comes_before_dct
    table_class.query = query_measuring_once
    table_class.sorted_items = sorted_items
    table_class.all_items = cached_all_items
    table_class.put_item = patched_put
    table_class.delete_item = patched_delete
    table_class._local_invalidate = invalidate


_partition = threading.local()


class _IndexOrder:
    """A global secondary index's items in moto's Query order, per partition, kept up to date by every write.

    moto orders a GSI Query's matches by (index hash key, index range key, table hash key, table range key)
    (`Table._generate_attr_to_sort_by`), each compared by `DynamoType.cast_value`; an item belongs to the
    index when it has the index's key attributes (moto's own test: `item.attrs.get(name)` is truthy). For an
    index with one hash and one range key (every index mailbridge declares has both), `partitions` maps a
    hash value to the sorted (sort key, item) pairs of its partition; `members` maps a table key to the entry
    of the item it holds, so a write moves the item's entry. Built from the table at an index's first Query;
    every write path of this module reports here (`changed`, `removed`), and PartiQL drops the orders.
    Emulator state only: runs under the request lock like the writes that change it."""

    def __init__(self, table, index) -> None:
        schema = index.schema
        self.hash_attr = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
        self.range_attr = next(k["AttributeName"] for k in schema if k["KeyType"] == "RANGE")
        self.table_attrs = [a for a in (table.hash_key_attr, table.range_key_attr) if a]
        self.partitions: dict[Any, tuple[list, list]] = {}
        self.members: dict[tuple, tuple[Any, tuple]] = {}
        for item in table.all_items():
            self.add(item)

    @staticmethod
    def usable(index) -> bool:
        keys = [k["KeyType"] for k in index.schema]
        return keys.count("HASH") == 1 and keys.count("RANGE") == 1

    def sort_key(self, item) -> tuple | None:
        attrs = item.attrs
        if not attrs.get(self.hash_attr) or not attrs.get(self.range_attr):
            return None
        return tuple(_sort_value(attrs[name]) for name in (self.hash_attr, self.range_attr, *self.table_attrs))

    @staticmethod
    def table_key(item) -> tuple:
        return (_sort_value(item.hash_key), None if item.range_key is None else _sort_value(item.range_key))

    def add(self, item) -> None:
        key = self.sort_key(item)
        if key is None:
            return
        keys, items = self.partitions.setdefault(key[0], ([], []))
        at = bisect.bisect_left(keys, key)
        keys.insert(at, key)
        items.insert(at, item)
        self.members[self.table_key(item)] = (key[0], key)

    def discard(self, table_key: tuple) -> None:
        found = self.members.pop(table_key, None)
        if found is None:
            return
        keys, items = self.partitions[found[0]]
        at = bisect.bisect_left(keys, found[1])
        del keys[at], items[at]
        if not keys:
            del self.partitions[found[0]]

    @classmethod
    def changed(cls, table, item) -> None:
        orders = table.__dict__.get("_local_orders")
        if not orders or item is None:
            return
        for order in orders.values():
            order.discard(cls.table_key(item))
            order.add(item)

    @classmethod
    def removed(cls, table, item) -> None:
        for order in (table.__dict__.get("_local_orders") or {}).values():
            order.discard(cls.table_key(item))

    @staticmethod
    def forget(table) -> None:
        table.__dict__.pop("_local_orders", None)

    @classmethod
    def partition(cls, table, hash_key, args: tuple, kwargs: dict) -> list | None:
        """What `all_items` hands this Query: the hash key's items (a table Query), the index partition in
        moto's order (a GSI Query as described above, also marked as sorted), or None (moto walks the table)."""
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if not index_name:
            if hash_key is None or not table.range_key_attr:
                return None
            return list(table.items.get(hash_key, {}).values())
        index = next((i for i in table.global_indexes if i.name == index_name), None)
        conditions = kwargs.get("hash_key_conditions") or []
        ranges = kwargs.get("range_key_conditions") or []
        if index is None or not cls.usable(index) or len(conditions) != 1 or len(ranges) > 1:
            return None
        orders = table.__dict__.setdefault("_local_orders", {})
        order = orders.get(index_name)
        if order is None:
            order = orders[index_name] = cls(table, index)
        attr, value = conditions[0]
        if attr != order.hash_attr:
            return None
        found = order.partitions.get(_sort_value(value))
        _partition.in_order = True
        return list(found[1]) if found else []


def _sort_value(value) -> Any:
    """`DynamoType.cast_value`, with key types' common case (a string) read directly."""
    return value.value if value.type == "S" else value.cast_value


def _item_key(table, op_type: str, op: dict) -> tuple[Any, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType
    source = op["Item"] if op_type == "Put" else op["Key"]
    hash_key = DynamoType(source[table.hash_key_attr])
    range_key = DynamoType(source[table.range_key_attr]) if table.range_key_attr else None
    return hash_key, range_key


def _restore_item(table, hash_key, range_key, original) -> None:
    if original is None:
        if table.get_item(hash_key, range_key) is not None:
            table.delete_item(hash_key, range_key)
        return
    if range_key is not None:
        table.items[hash_key][range_key] = original
    else:
        table.items[hash_key] = original
    table._local_invalidate()
    _IndexOrder.changed(table, original)
    DIRTY.mark(table.name, hash_key, range_key)


def _patch_backend(backend_class) -> None:
    transact = backend_class.transact_write_items
    update_item = backend_class.update_item

    def locked(method):
        def wrapper(self, *args, **kwargs):
            with WRITE_LOCK:
                return method(self, *args, **kwargs)
        wrapper.__name__ = method.__name__
        return wrapper

    def patched_update(self, table_name, key, *args, **kwargs):
        """moto's UpdateItem, minus its deep copy of the item as it was, which feeds only the table's stream."""
        _updating.without_stream = self.get_table(table_name).stream_shard is None
        try:
            item = update_item(self, table_name, key, *args, **kwargs)
        finally:
            _updating.without_stream = False
        _IndexOrder.changed(self.get_table(table_name), item)   # moto updates the item in place
        DIRTY.mark(table_name, item.hash_key, item.range_key)
        return item

    def transact_write_items(self, transact_items):
        """moto's TransactWriteItems with a per-item rollback backup instead of deep copies of whole tables."""
        backups = []
        for entry in transact_items[:100]:
            op_type, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None or op_type not in ("Put", "Delete", "Update"):
                continue
            try:
                hash_key, range_key = _item_key(table, op_type, op)
            except (KeyError, TypeError):
                continue   # moto raises the validation error itself
            backups.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, original in reversed(backups):
                _restore_item(table, hash_key, range_key, original)
            raise

    for name in ("put_item", "delete_item", "batch_write_item"):
        setattr(backend_class, name, locked(getattr(backend_class, name)))
    execute_statement = backend_class.execute_statement

    def statement_then_forget_orders(self, *args, **kwargs):
        """PartiQL may update items in place by paths this module does not follow: the index orders are
        rebuilt at the next Query."""
        try:
            return execute_statement(self, *args, **kwargs)
        finally:
            for table in self.tables.values():
                _IndexOrder.forget(table)

    backend_class.execute_statement = locked(statement_then_forget_orders)
    backend_class.update_item = locked(patched_update)
    backend_class.transact_write_items = locked(transact_write_items)


_updating = threading.local()


class _CopyWithoutTables:
    """`copy` as moto's DynamoDB models module sees it: `deepcopy` of a whole `Table` (transact_write_items'
    rollback backup) returns the table itself, so moto's own rollback assigns each table back to itself;
    `transact_write_items` above restores the touched items instead. Inside an UpdateItem on a table without a
    stream, the copy of the item as it was (moto passes it only to the stream) is the item itself. Every other
    deep copy is unchanged."""

    def __init__(self, table_class, item_class) -> None:
        self.table_class, self.item_class = table_class, item_class

    def deepcopy(self, value, memo=None):
        if isinstance(value, self.table_class):
            return value
        if isinstance(value, self.item_class) and getattr(_updating, "without_stream", False):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


class _QueryResultsNotCopied:
    """`copy` as moto's table module sees it: `Table.query` deep-copies the page of items it found before
    filtering and projecting them (a fifth of a message list's CPU). Filters and top-level projections
    (`_patch_projection`, which copies what it picks) only read them, and the response is turned into plain
    JSON before the request lock is released (`_lock_requests`), so the page is passed on as it is. Every
    other deep copy (single items, backups) is unchanged."""

    def __init__(self, item_class) -> None:
        self.item_class = item_class

    def deepcopy(self, value, memo=None):
        if isinstance(value, list) and all(isinstance(v, self.item_class) for v in value):
            return list(value)
        return copy.deepcopy(value, memo)

    def __getattr__(self, name):
        return getattr(copy, name)
