"""Cost model: $ per mailbox-month, per provider kind, from AWS calls counted in this run × a checked-in price
table (`bench/cost/prices.json`, with its date).

    python -m bench.cost [--idle-syncs 30] [--messages 20] [--kinds imap,gmail,outlook] [--breakdown]

`--breakdown` lists every DynamoDB item the last one-message sync of each kind wrote (worker and notifier): its
table, the operation (`TransactWriteItems.Put`, `BatchWriteItem.Put`, ...), its size before and after, its units
by the meter's rule and by its own size, and the index writes it caused per GSI (`Meter.ledger`), so each WRU of
`sync_with_one_message` is accounted for; also recorded as `one_message_writes`.

For each kind a mailbox on its local server (bench/cost/worlds.py) runs in in-process moto through the real
worker: an initial sync, `--idle-syncs` scheduled syncs with nothing new (idle checks), a few heartbeat syncs
(scheduled syncs after `MAILBRIDGE_IDLE_HEARTBEAT_SECONDS`: the full leased sync), then `--messages` syncs that
each bring one new ~6 KB message (Gmail/Outlook: push jobs; IMAP: scheduled jobs, through the check function),
with the notifier handling
every event they cause. An idle month mixes the two kinds of scheduled sync: one tick in heartbeat / 30 min is
a heartbeat. The meter
(bench/cost/meter.py) counts billable units per AWS service. A month is 1,440 scheduled syncs (the :00/:30
tick); an active mailbox receives 50 mails a day (1,500 a month): Gmail and Outlook bring each in with its own
push (one API Gateway request + one API Lambda run + one worker run), IMAP picks them up in the scheduled
syncs (the marginal cost of the new mail on top of the idle syncs).

Lambda duration is modelled, not taken from this machine: the worker's own compute measured here (process CPU
time minus the CPU spent inside moto's AWS calls and, since 2026-12-02, minus the CPU of the Gmail/Outlook fakes,
which serve from threads of this process — their request handling and the server side of their TLS handshakes
(`server_cpu`); Dovecot is a process of its own) scaled to the CPU share Lambda gives the function's memory
(1,769 MB = one vCPU, proportionally less below: https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html;
this machine's core is taken as one vCPU), plus each counted AWS call × the latency in `LATENCY_S` plus each
provider round trip × `PROVIDER_RTT_S`, billed at the worker's memory size from `.chalice/config.json` (prod
stage). Scheduled jobs go through the check function (`chalicelib/sync/check.py`, as the scheduler sends them when
the check queue exists): an idle tick is billed at the check function's memory (`checker` in `.chalice/config.json`,
or `--check-memory-mb N`), a tick it forwards (heartbeat, new IMAP mail) at the worker's; push jobs go straight to
the worker. The output also prices the idle month as if the checks ran at the worker's memory (the old shape).

Caches and batches: scheduled syncs are 30 min apart, longer than a process's caches of decrypted keys
(`MAILBRIDGE_DATA_KEY_CACHE_SECONDS`, 300 s) and tenant reads (60 s), so every check invocation and every worker
sync starts with both emptied. An idle tick is measured as the check function meets it: one invocation over a batch
of `--check-batch` scheduled jobs (10, the batch size in `app.py`) — the measured mailbox and `--check-batch` − 1
other mailboxes of the same kind, each in a tenant of its own with its own account and credentials (`worlds.py`
`neighbour`; the scheduler hands jobs out in mailbox-id order, across tenants) — and billed per job. The batch
unwraps the root key once (`security/tenant_keys.py`: one `kms:Decrypt` opens every tenant's secrets key) and reads
each job's tenant; `--check-batch 1` prices an invocation of a single job. The jobs of a batch run
`check_concurrency` at a time (`chalicelib/sync/check.py`, default 10): the model lets their waits (AWS calls,
provider round trips) overlap that many ways and adds their CPU up. The batch is measured with
`MAILBRIDGE_CHECK_CONCURRENCY=1` (the same work, one record after another): the meter tells the CPU spent inside
moto's calls from the rest by process CPU time around each call, which concurrent threads would blur. Access tokens
live an hour (Google and Microsoft) and are not stored (they stay in the process, `credentials/tokens.py`), so a
sync in a cold process refreshes one; the back-to-back syncs here never
do, so that refresh is added from `TOKEN_REFRESH` (modelled: one token-endpoint round trip a sync, and the CPU of a
refresh measured on the world's mailbox (`refresh_cpu`: a forced refresh in a cold process, the fake identity
provider's own work left out); Outlook also writes its rotated MSAL cache back once every 24 ticks: one
mailbox-item update. The OAuth app's client secret, which only a refresh needs, and the resealed cache use the keys
the sync already opened: no KMS call).

Fan-out: each scheduled sync also pays its share of the scheduler's `SendMessageBatch` and of the SQS poller's
`ReceiveMessage` + `DeleteMessageBatch` (all per 10 jobs); scheduled jobs reach the worker in batches of 10 (one
invocation per 10 syncs); push-triggered syncs are counted as one invocation each. Storage is the first
month's: raw mail in S3 and the DynamoDB items the messages left, half a month on average. Free tiers are
ignored. Targets (issue "Proof"): idle ≤ $0.005, active ≤ $0.03 per mailbox-month.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.cost import server_cpu  # noqa: E402
from bench.cost.meter import SCALARS, Meter, Usage, mean_item_kb  # noqa: E402
from bench.imap_ingest.world import moto_world  # noqa: E402
from bench.record import record  # noqa: E402

PRICES = json.loads((Path(__file__).parent / "prices.json").read_text())
LATENCY_S = {"dynamodb": 0.006, "s3": 0.02, "sqs": 0.01, "kms": 0.008}      # typical in-region p50s
PROVIDER_RTT_S = {"imap": 0.03, "gmail": 0.08, "outlook": 0.1}
SYNCS_PER_MONTH = 48 * 30
SYNC_SPACING_S = 1800
MAILS_PER_MONTH = 50 * 30
# Lambda's own lines per invocation (START, END, REPORT: ~400 bytes together,
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html); the functions' lines are metered
PLATFORM_LOG_BYTES_PER_INVOCATION = 400
API_PUSH_SECONDS, API_MEMORY_GB = 0.05, 1.0   # the push handler's run (bench.gmail_push p95 ≈ 54 ms)
TARGETS = {"idle": 0.005, "active": 0.03}
MB_PER_VCPU = 1769                 # Lambda: 1,769 MB of memory = one vCPU (configuration-memory.html)
SQS_FAN_OUT_PER_SYNC = 3 / 10      # SendMessageBatch + ReceiveMessage + DeleteMessageBatch per 10 jobs
TOKEN_REFRESH = {                  # per sync, modelled: every sync refreshes (see the module docstring)
    # item_writes: the rotated MSAL cache written back, once the stored refresh token is 12 h old (24 ticks:
    # providers/graph/tokens.py). No KMS call: the client secret a refresh sends and the cache it reseals open
    # and seal under the tenant key the sync already opened (security/tenant_keys.py).
    "gmail": {"per_sync": 1.0, "round_trips": 1, "item_writes": 0},
    "outlook": {"per_sync": 1.0, "round_trips": 1, "item_writes": 1 / 24},
}
CHECK_BATCH = 10                   # the check function's SQS batch size (app.py `checker`)
FORWARD_SQS_PER_JOB = 2 / 10       # a job the check function forwards: the worker poller's Receive + Delete per 10


def memory_gb(function: str) -> float:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return config["stages"]["prod"]["lambda_functions"][function]["lambda_memory_size"] / 1024


def worker_memory_gb() -> float:
    return memory_gb("worker")


def vcpu_share(memory_gb: float) -> float:
    """The vCPU share Lambda gives a function of this size (one core used: a single-threaded worker)."""
    return min(1.0, memory_gb * 1024 / MB_PER_VCPU)


def cold_caches() -> None:
    """What a warm Lambda no longer holds 30 min after the last sync of a mailbox (see the module docstring)."""
    from chalicelib.security.crypto import clear_data_key_cache
    from chalicelib.sync.worker import tenant_may_sync
    clear_data_key_cache()
    tenant_may_sync.clear()


@contextlib.contextmanager
def cold_start():
    """A new moto world starts with a process that holds no key: a root key cached from the previous kind's
    world (another moto) is not this world's."""
    cold_caches()
    yield


def run_queues(meter: Meter) -> None:
    """Hand queued sync jobs to the worker and events to the notifier until both queues are empty. Receiving
    is Lambda's SQS poller's work (per queue, not per mailbox): not metered."""
    import boto3

    from chalicelib.notify import notifier
    from chalicelib.sync import worker
    from tests.sync_helpers import FakeContext, receive_event
    from chalicelib.config import get_settings
    settings = get_settings()
    sqs = boto3.client("sqs")
    for _ in range(50):
        moved = 0
        for url, handler in ((settings.sync_queue_url, worker.handle_batch),
                             (settings.events_queue_url, notifier.handle_batch)):
            with meter.pause():
                event = receive_event(url, 10)
            if event["Records"]:
                handler(event, FakeContext())
                moved += 1
                with meter.pause():           # what the event source mapping does after a successful batch
                    for record in event["Records"]:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
        if not moved:
            return


def sync_once(world, meter: Meter, reason: str = "schedule", mailbox=None) -> None:
    """One job for the mailbox (default: the world's): a scheduled one through the check function (which
    forwards it to the worker only when there is something to do), any other straight to the worker; then the
    queues are run dry."""
    from chalicelib.sync import check, worker
    from tests.sync_helpers import FakeContext, job_event
    mailbox = mailbox or world.mailbox
    cold_caches()
    handler = check.handle_batch if reason == "schedule" else worker.handle_batch
    result = handler(job_event((mailbox.tenant_id, mailbox.mailbox_id), reason=reason), FakeContext())
    assert result["batchItemFailures"] == [], result
    if reason == "schedule":
        cold_caches()                 # a forwarded job runs in the worker: another function, its own caches
    if hasattr(world, "syncs"):
        world.syncs += 1
    run_queues(meter)


def check_batch(world, meter: Meter, mailboxes: list) -> None:
    """One check-function invocation over a batch of scheduled jobs, one per mailbox, in a cold process, its
    records one after another (see the module docstring); then the queues are run dry (the worker takes what
    the check forwarded, with caches of its own)."""
    import os

    from chalicelib.config import reset_settings
    from chalicelib.sync import check
    from tests.sync_helpers import FakeContext, job_event
    cold_caches()
    event = job_event(*[(box.tenant_id, box.mailbox_id) for box in mailboxes], reason="schedule")
    configured = os.environ.get("MAILBRIDGE_CHECK_CONCURRENCY")
    os.environ["MAILBRIDGE_CHECK_CONCURRENCY"] = "1"
    reset_settings()
    try:
        result = check.handle_batch(event, FakeContext())
    finally:
        if configured is None:
            os.environ.pop("MAILBRIDGE_CHECK_CONCURRENCY")
        else:
            os.environ["MAILBRIDGE_CHECK_CONCURRENCY"] = configured
        reset_settings()
    assert result["batchItemFailures"] == [], result
    cold_caches()
    if hasattr(world, "syncs"):
        world.syncs += len(mailboxes)
    run_queues(meter)


def phase(world, meter: Meter, action) -> tuple[Usage, float, int]:
    """(AWS usage, the process CPU seconds spent — the fake providers' own left out (`server_cpu`) —, provider
    round trips) of `action`."""
    before, trips, started, fakes = meter.usage.copy(), world.round_trips(), time.process_time(), server_cpu.spent()
    action()
    cpu = time.process_time() - started - (server_cpu.spent() - fakes)
    return meter.usage.minus(before), cpu, world.round_trips() - trips


def dollars(usage: Usage, invocations: float, compute_s: float, trips: float, kind: str,
            item_kb: dict[str, float], memory_gb: float | None = None, wait_overlap: float = 1.0) -> dict[str, float]:
    """Cost of `usage` (already scaled: its log lines too) in `invocations` invocations, `compute_s` of
    one-core CPU time, billed at `memory_gb` (default: the prod worker's); the waits (AWS calls, provider round
    trips) of `wait_overlap` jobs run at once overlap, their CPU does not."""
    memory_gb = memory_gb or worker_memory_gb()
    aws_wait = sum(n * LATENCY_S.get(service, 0.01) for (service, _), n in usage.calls.items())
    seconds = compute_s / vcpu_share(memory_gb) + (aws_wait + trips * PROVIDER_RTT_S[kind]) / max(1.0, wait_overlap)
    p = PRICES
    return {
        "lambda": invocations * p["lambda"]["per_request"]
                  + seconds * memory_gb * p["lambda"]["per_gb_second"],
        "dynamodb": usage.wru(item_kb) * p["dynamodb"]["per_write_request_unit"]
                    + usage.rru * p["dynamodb"]["per_read_request_unit"],
        "s3": usage.s3_put * p["s3"]["per_put"] + usage.s3_get * p["s3"]["per_get"],
        "sqs": usage.sqs_requests * p["sqs"]["per_request"],
        "kms": usage.kms * p["kms"]["per_request"],
        "logs": (usage.log_bytes + invocations * PLATFORM_LOG_BYTES_PER_INVOCATION) / 1e9
                * p["cloudwatch_logs"]["per_gb_ingested"],
    }


def scaled(usage: Usage, factor: float) -> Usage:
    out = usage.copy()
    out.calls = type(usage.calls)({k: v * factor for k, v in usage.calls.items()})
    out.writes_by_table = type(usage.writes_by_table)({k: v * factor for k, v in usage.writes_by_table.items()})
    out.debt_writes = type(usage.debt_writes)({k: v * factor for k, v in usage.debt_writes.items()})
    for name in SCALARS:
        setattr(out, name, getattr(usage, name) * factor)
    return out


def mixed(a: Usage, b: Usage, share_b: float) -> Usage:
    """(1 - share_b) of `a` plus share_b of `b`, per sync."""
    x, y = scaled(a, 1 - share_b), scaled(b, share_b)
    out = x.copy()
    out.calls.update(y.calls)
    out.writes_by_table.update(y.writes_by_table)
    out.debt_writes.update(y.debt_writes)
    for name in SCALARS:
        setattr(out, name, getattr(x, name) + getattr(y, name))
    return out


def heartbeat_share() -> float:
    """The share of scheduled syncs that are full (heartbeat) syncs: one tick in heartbeat / 30 min."""
    from chalicelib.config import get_settings
    heartbeat = get_settings().idle_heartbeat_seconds
    return 1.0 if heartbeat <= 0 else min(1.0, SYNC_SPACING_S / heartbeat)


def refresh_cpu(world, meter: Meter, times: int = 5) -> float:
    """Process CPU seconds of one access-token refresh of the world's mailbox as a cold process makes it (the
    provider built, the process's warm access tokens forgotten, the refresh forced), minus moto's and the fake
    identity provider's share."""
    from chalicelib.credentials.tokens import forget_warm_tokens
    from chalicelib.providers.kinds import build_provider
    from tests.sync_helpers import reload
    spent = 0.0
    for _ in range(times):
        with meter.pause():
            provider = build_provider(reload(world.mailbox))
        forget_warm_tokens()
        source = provider.context.tokens
        source.invalidate()
        moto_before, started, fakes = meter.usage.cpu, time.process_time(), server_cpu.spent()
        source.access_token()
        spent += (time.process_time() - started - (meter.usage.cpu - moto_before)
                  - (server_cpu.spent() - fakes))
        provider.close()
    return max(0.0, spent / times)


def age_last_success(world, meter: Meter) -> None:
    """Make the next scheduled sync a heartbeat (harness work: not metered)."""
    from chalicelib.config import get_settings
    from chalicelib.models.mailbox import Mailbox
    from chalicelib.timeutil import isoformat, utcnow
    import datetime as dt
    with meter.pause():
        old = utcnow() - dt.timedelta(seconds=get_settings().idle_heartbeat_seconds + 60)
        Mailbox(world.mailbox.tenant_id, world.mailbox.mailbox_id).update(
            actions=[Mailbox.last_success_at.set(isoformat(old))])


def with_fan_out_and_tokens(usage: Usage, kind: str, table: str) -> tuple[Usage, float]:
    """One scheduled sync's `usage` plus its share of the SQS fan-out and of the hourly token refresh
    (see the module docstring); also returns the token refresh's provider round trips."""
    out = usage.copy()
    out.sqs_requests += SQS_FAN_OUT_PER_SYNC
    refresh = TOKEN_REFRESH.get(kind)
    if refresh is None:
        return out, 0.0
    out.writes_by_table[table] += refresh["per_sync"] * refresh["item_writes"]
    out.calls[("dynamodb", "UpdateItem")] += refresh["per_sync"] * refresh["item_writes"]
    return out, refresh["per_sync"] * refresh["round_trips"]


def storage_per_message() -> tuple[float, float]:
    """(raw bytes in S3, DynamoDB item bytes) per stored message; an item's stored size is its billed size + 100
    bytes of indexing overhead ("DynamoDB item sizes and formats", DynamoDB Developer Guide)."""
    import boto3

    from bench.cost.meter import item_bytes
    from chalicelib.config import get_settings
    s3 = boto3.client("s3")
    objects = s3.list_objects_v2(Bucket=get_settings().raw_bucket).get("Contents", [])
    dynamodb = boto3.client("dynamodb")
    total = 0
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            total += sum(item_bytes(item) + 100 for item in page["Items"])
    count = max(1, len(objects))
    return sum(o["Size"] for o in objects) / count, total / count


def make_personal(world) -> None:
    """Turn the world's (shared) mailbox into a user's personal one: an owner, so the item is in `by_owner`."""
    from bench.cost.worlds import TENANT
    from chalicelib.mailboxes.service import owner_key
    from chalicelib.models.mailbox import Mailbox
    world.mailbox.update(actions=[Mailbox.kind.set("personal"), Mailbox.owner_user_id.set("u-owner"),
                                  Mailbox.owner_key.set(owner_key(TENANT, "u-owner"))])
    world.mailbox = Mailbox.get(world.mailbox.tenant_id, world.mailbox.mailbox_id, consistent_read=True)


def itemized(entries: list, item_kb: dict[str, float]) -> list[dict]:
    """The ledger of one sync (`Meter.ledger`) as rows: every item written, its table write's units (by the
    meter's rule and by the item's own size) and its index writes."""
    def short(table: str) -> str:
        return table.rsplit("-", 1)[-1]
    return [{"table": short(e.table), "action": e.action, "key": e.key[:60], "bytes": [e.bytes_before, e.bytes_after],
             "attributes": list(e.attributes), "wru": e.table_wru(item_kb), "wru_own_size": e.table_wru(),
             "index_wru": e.index_wru} for e in entries]


def print_breakdown(kind: str, rows: list[dict], one_wru: float) -> None:
    print(f"  {kind}: every DynamoDB item written by the last one-message sync (WRU: table write by the meter's "
          f"rule / by the item's own size; index writes)")
    print(f"    {'table':<16} {'action':<28} {'bytes before→after':>19} {'WRU':>4} {'own':>4} {'index':<44} attributes")
    total = own = 0.0
    by_table: dict[str, float] = {}
    for row in rows:
        index = sum(row["index_wru"].values())
        total += row["wru"] + index
        own += row["wru_own_size"] + index
        by_table[row["table"]] = by_table.get(row["table"], 0.0) + row["wru"] + index
        sizes = f"{row['bytes'][0]}→{row['bytes'][1]}"
        indexes = ", ".join(f"{name} {units:g}" for name, units in row["index_wru"].items())
        print(f"    {row['table']:<16} {row['action']:<28} {sizes:>19} {row['wru']:>4g} {row['wru_own_size']:>4g} "
              f"{indexes:<44} {','.join(row['attributes'])[:70]}")
    print(f"    total {total:g} WRU by the meter's rule ({own:g} by own sizes); the run's mean one-message sync: "
          f"{one_wru:g}; per table: " + ", ".join(f"{t} {u:g}" for t, u in sorted(by_table.items(),
                                                                                   key=lambda x: -x[1])))


def measure(kind: str, idle_syncs: int, messages: int, check_memory_gb: float | None = None,
            personal: bool = False, batch: int = CHECK_BATCH, breakdown: bool = False) -> dict:
    from bench.cost.worlds import WORLDS
    from chalicelib.config import get_settings
    from chalicelib.models.mailbox import Mailbox
    pushed = kind != "imap"          # Gmail/Outlook mail arrives by push (a push job skips the idle check)
    with moto_world(), cold_start(), server_cpu.measuring(), WORLDS[kind]() as world:
        if personal:
            make_personal(world)
        meter = Meter()
        try:
            sync_once(world, meter, reason="initial")                 # the initial (empty) import
            with meter.pause():
                neighbours = [world.neighbour(n) for n in range(batch - 1)]
            for box in neighbours:
                sync_once(world, meter, reason="initial", mailbox=box)
            checks, check_cpu, check_trips = phase(world, meter, lambda: [
                check_batch(world, meter, [world.mailbox, *neighbours]) for _ in range(idle_syncs)])
            checked = idle_syncs * batch          # jobs the idle checks ran, billed per job below
            beats = max(2, idle_syncs // 5)

            def heartbeats():
                for _ in range(beats):
                    age_last_success(world, meter)
                    sync_once(world, meter)
            beat, beat_cpu, beat_trips = phase(world, meter, heartbeats)

            ledger: list = []

            def active_syncs():
                for n in range(messages):
                    if breakdown and n == messages - 1:
                        meter.ledger = ledger
                    world.deliver(n)
                    sync_once(world, meter, reason="push" if pushed else "schedule")
                    meter.ledger = None
            active, active_cpu, active_trips = phase(world, meter, active_syncs)
            token_cpu = refresh_cpu(world, meter) if kind in TOKEN_REFRESH else 0.0
            item_kb = mean_item_kb()
            item_kb_without_secret = mean_item_kb(frozenset({"secret_ciphertext"}))
            raw_bytes, item_bytes_per_message = storage_per_message()
            mailbox_table = Mailbox.Meta.table_name
        finally:
            meter.close()
    share = heartbeat_share()       # an idle month: idle checks, and a full sync every heartbeat
    check_one, beat_one = scaled(checks, 1 / checked), scaled(beat, 1 / beats)
    idle_one = mixed(check_one, beat_one, share)
    refresh_each = TOKEN_REFRESH.get(kind, {}).get("per_sync", 0.0) * token_cpu   # a cold process's refresh
    idle_compute = ((1 - share) * max(0.0, check_cpu - checks.cpu) / checked
                    + share * max(0.0, beat_cpu - beat.cpu) / beats) + refresh_each
    idle_trips_per_sync = (1 - share) * check_trips / checked + share * beat_trips / beats
    active_one = scaled(active, 1 / messages)
    active_compute = max(0.0, active_cpu - active.cpu) / messages + refresh_each
    idle_billed, token_trips = with_fan_out_and_tokens(idle_one, kind, mailbox_table)
    idle_trips_one = idle_trips_per_sync + token_trips
    # An idle tick runs in the check function (its own memory size); a heartbeat tick passes through it and is
    # forwarded to the worker (billed whole at the worker's size: the check's GetItem + SendMessage there are
    # a slight overestimate), one more SQS job and worker invocation per forwarded tick.
    check_billed, _ = with_fan_out_and_tokens(check_one, kind, mailbox_table)
    beat_billed, _ = with_fan_out_and_tokens(beat_one, kind, mailbox_table)
    beat_billed.sqs_requests += FORWARD_SQS_PER_JOB
    check_compute = max(0.0, check_cpu - checks.cpu) / checked + refresh_each
    overlap = min(batch, max(1, get_settings().check_concurrency))
    beat_compute = max(0.0, beat_cpu - beat.cpu) / beats + refresh_each
    checker_gb = check_memory_gb or memory_gb("checker")

    def idle_month_at(check_gb: float) -> dict[str, float]:
        ticks, beat_ticks = SYNCS_PER_MONTH * (1 - share), SYNCS_PER_MONTH * share
        idle = dollars(scaled(check_billed, ticks), ticks / batch, check_compute * ticks,
                       (check_trips / checked + token_trips) * ticks, kind, item_kb, check_gb, overlap)
        beaten = dollars(scaled(beat_billed, beat_ticks), 2 * beat_ticks / 10, beat_compute * beat_ticks,
                         (beat_trips / beats + token_trips) * beat_ticks, kind, item_kb)
        return {name: idle[name] + beaten[name] for name in idle}
    month_idle = idle_month_at(checker_gb)
    if kind == "imap":       # new mail rides on the scheduled syncs: only its marginal cost is added
        extra = scaled(active_one.minus(idle_one), MAILS_PER_MONTH)
        extra_cost = dollars(extra, 0, max(0.0, active_compute - idle_compute) * MAILS_PER_MONTH,
                             max(0.0, active_trips / messages - idle_trips_per_sync) * MAILS_PER_MONTH, kind,
                             item_kb)
        push = 0.0
    else:                    # each mail: its own push → API Gateway + API Lambda (its marker write) + a worker run
        pushed_one = active_one.copy()
        pushed_one.writes_by_table[mailbox_table] += 1            # request_sync: the sync_queued_at marker
        pushed_one.rru += 0.5                                     # the by_push_key Query
        extra_cost = dollars(scaled(pushed_one, MAILS_PER_MONTH), MAILS_PER_MONTH,
                             active_compute * MAILS_PER_MONTH, active_trips / messages * MAILS_PER_MONTH, kind,
                             item_kb)
        push = MAILS_PER_MONTH * (PRICES["api_gateway"]["per_request"] + PRICES["lambda"]["per_request"]
                                  + API_PUSH_SECONDS * API_MEMORY_GB * PRICES["lambda"]["per_gb_second"]
                                  + PLATFORM_LOG_BYTES_PER_INVOCATION / 1e9
                                  * PRICES["cloudwatch_logs"]["per_gb_ingested"])
    storage = (MAILS_PER_MONTH / 2 * raw_bytes / 1e9 * PRICES["s3"]["per_gb_month"]
               + MAILS_PER_MONTH / 2 * item_bytes_per_message / 1e9 * PRICES["dynamodb"]["per_gb_month"])
    active_month = {name: month_idle[name] + extra_cost[name] for name in month_idle}
    active_month["push (API Gateway + API Lambda)"] = push
    active_month["storage (S3 + DynamoDB)"] = storage
    # What-ifs for the mailbox item (not built): (a) the sealed credentials in an item of their own — every
    # mailbox-item write (lease, page debts, markers) billed at the item's size without `secret_ciphertext`;
    # (b) the page debts in a small item of their own — only the writes touching `owed_pages` at 1 KB.
    mailbox_kb = max(1, math.ceil(item_kb.get(mailbox_table, 1.0)))
    one_wru = active_one.wru(item_kb)
    wru_a = active_one.wru({**item_kb, mailbox_table: item_kb_without_secret.get(mailbox_table, 1.0)})
    wru_b = one_wru - active_one.debt_writes[mailbox_table] * (mailbox_kb - 1)
    per_wru_month = MAILS_PER_MONTH * PRICES["dynamodb"]["per_write_request_unit"]
    item_what_if = {
        "mailbox_item_kb": round(item_kb.get(mailbox_table, 0.0), 2),
        "mailbox_item_kb_without_secret": round(item_kb_without_secret.get(mailbox_table, 0.0), 2),
        "one_message_wru": round(one_wru, 2),
        "credentials_own_item": {"one_message_wru": round(wru_a, 2),
                                 "active_month_saving_usd": round((one_wru - wru_a) * per_wru_month, 5)},
        "page_debt_own_item": {"one_message_wru": round(wru_b, 2),
                               "active_month_saving_usd": round((one_wru - wru_b) * per_wru_month, 5)}}
    in_worker = idle_month_at(worker_memory_gb())        # what-if: the checks billed at the worker's size
    what_if = {"check_memory_gb": checker_gb, "check_batch": batch, "check_concurrency": overlap,
               "idle_month_usd_if_checks_ran_at_worker_memory": round(sum(in_worker.values()), 5)}
    rows = itemized(ledger, item_kb) if breakdown else []
    return {
        **({"one_message_writes": rows} if breakdown else {}),
        "idle_sync": {"aws_calls": {f"{s}.{o}": round(n, 2) for (s, o), n in idle_one.calls.items()},
                      "wru": round(idle_one.wru(item_kb), 2), "rru": round(idle_one.rru, 2),
                      "kms": round(idle_one.kms, 2), "provider_round_trips": round(idle_trips_per_sync, 2),
                      "compute_s": round(idle_compute, 3), "heartbeat_share": round(share, 4),
                      "check_only": {"calls": {f"{s}.{o}": round(n, 2) for (s, o), n in check_one.calls.items()},
                                     "wru": round(check_one.wru(item_kb), 2)},
                      "heartbeat_sync": {"calls": {f"{s}.{o}": round(n, 2) for (s, o), n in beat_one.calls.items()},
                                         "wru": round(beat_one.wru(item_kb), 2)},
                      "with_token_refresh_and_fan_out": {
                          "wru": round(idle_billed.wru(item_kb), 2), "kms": round(idle_billed.kms, 2),
                          "sqs_requests": round(idle_billed.sqs_requests, 2),
                          "provider_round_trips": round(idle_trips_one, 2)}},
        "sync_with_one_message": {"aws_calls": {f"{s}.{o}": round(n, 2) for (s, o), n in active_one.calls.items()},
                                  "wru": round(active_one.wru(item_kb), 2), "rru": round(active_one.rru, 2),
                                  "s3_put": round(active_one.s3_put, 2),
                                  "provider_round_trips": round(active_trips / messages, 2),
                                  "compute_s": round(active_compute, 3)},
        "raw_bytes_per_message": round(raw_bytes), "dynamodb_bytes_per_message": round(item_bytes_per_message),
        "idle_month_usd": round(sum(month_idle.values()), 5),
        "active_month_usd": round(sum(active_month.values()), 5),
        "idle_breakdown": {k: round(v, 6) for k, v in month_idle.items()},
        "active_breakdown": {k: round(v, 6) for k, v in active_month.items()},
        "check_function": what_if,
        "token_refresh": {"cpu_s": round(token_cpu, 4), **TOKEN_REFRESH.get(kind, {})},
        "mailbox_item_what_if": item_what_if,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.cost")
    parser.add_argument("--idle-syncs", type=int, default=30)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--kinds", default="imap,gmail,outlook")
    parser.add_argument("--check-memory-mb", type=int, default=0,
                        help="price the check function at this size (default: its prod size in .chalice/config.json)")
    parser.add_argument("--check-batch", type=int, default=CHECK_BATCH,
                        help="scheduled jobs per check invocation, each in a tenant of its own (1: a lone job)")
    parser.add_argument("--breakdown", action="store_true",
                        help="list every DynamoDB item the last one-message sync wrote: table, operation, size, "
                             "units, index writes")
    parser.add_argument("--personal", action="store_true",
                        help="a user's personal mailbox (it has an owner: its item is also in the by_owner index) "
                             "instead of a shared one")
    args = parser.parse_args(argv)
    result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {platform.python_version()}", "prices_checked": PRICES["checked"],
              "worker_memory_gb": worker_memory_gb(), "targets_usd": TARGETS,
              "mailbox_kind": "personal" if args.personal else "shared", "kinds": {}}
    for kind in args.kinds.split(","):
        figures = measure(kind, args.idle_syncs, args.messages, args.check_memory_mb / 1024 or None, args.personal,
                          max(1, args.check_batch), args.breakdown)
        result["kinds"][kind] = figures
        print(f"{kind}: idle ${figures['idle_month_usd']:.4f}/mailbox-month "
              f"({'meets' if figures['idle_month_usd'] <= TARGETS['idle'] else 'over'} ${TARGETS['idle']}), "
              f"active (50 mails/day) ${figures['active_month_usd']:.4f} "
              f"({'meets' if figures['active_month_usd'] <= TARGETS['active'] else 'over'} ${TARGETS['active']})")
        print(f"  idle sync: {figures['idle_sync']}")
        print(f"  sync with one message: {figures['sync_with_one_message']}")
        print(f"  idle month: {figures['idle_breakdown']}")
        print(f"  active month: {figures['active_breakdown']}")
        print(f"  check function: {figures['check_function']}")
        print(f"  mailbox item what-if: {figures['mailbox_item_what_if']}")
        if args.breakdown:
            print_breakdown(kind, figures["one_message_writes"], figures["sync_with_one_message"]["wru"])
    result["check_batch"] = max(1, args.check_batch)
    name = "cost_personal" if args.personal else "cost"
    record(name if result["check_batch"] == CHECK_BATCH else f"{name}_check_batch_{result['check_batch']}", result)
    return result


if __name__ == "__main__":
    main()
