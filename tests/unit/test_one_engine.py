"""Guards the engine's provider-agnostic shape: per-kind construction, changed/vanished refs, throttling that
never poisons a mailbox, push coalescing, cursor items outside the mailbox, and the lifecycle defects found
when the engine was IMAP-only (lost follow-ups, suspended tenants synced, import_since ignored)."""
from __future__ import annotations

import ast
import json
import time
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.sync_cursor import SyncCursor
from chalicelib.models.tenant import Tenant
from chalicelib.notify import events
from chalicelib.pairing.engine import PairingResult
from chalicelib.providers import kinds
from chalicelib.providers.base import (ErrorCode, OAuthContext, ProviderContext, ProviderError, PushState,
                                       PushSubscriber)
from chalicelib.sync import effects, engine, lease, renewer, scheduler, worker
from chalicelib.sync.enqueue import request_sync
from chalicelib.timeutil import isoformat, utcnow
from tests.sync_helpers import (FakeContext, FakeProvider, counts_of, cursor_field, drain, job_event, make_mailbox,
                                reload)

FAR = float("inf")
ROOT = Path(__file__).resolve().parents[2]


def stored(mailbox) -> list[Message]:
    return list(Message.by_mailbox.query(mailbox.mailbox_id))


def run_worker(mailbox, provider, **options):
    return worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext(),
                               provider_factory=lambda m: provider, **options)


def queued(queue_url) -> list[dict]:
    return [entry["body"] for entry in drain(queue_url)]


# --- per-kind construction ---------------------------------------------------------------------------------

def test_the_worker_builds_a_provider_through_its_kind_entry(aws, monkeypatch):
    """Guards against construction that only knows IMAP: an OAuth-style kind gets a token source, no passwords."""
    built = []

    class Tokens:
        def access_token(self):
            return "token"

        def invalidate(self):
            pass

    def build_context(mailbox, credentials, timeout):
        context = OAuthContext(tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id, email=mailbox.email,
                               tokens=Tokens(), settings={"api_root": "http://127.0.0.1:1/"}, timeout=timeout)
        built.append((context, credentials.secrets))
        return context

    provider = FakeProvider({"inbox": 2})
    monkeypatch.setitem(kinds._KINDS, "testkind", kinds.ProviderKind("testkind", build_context,
                                                                     lambda context: provider, oauth=True))
    mailbox = make_mailbox(mailbox_type="testkind")
    CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).save({"refresh_token": "rt"}, 0)
    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == \
        {"batchItemFailures": []}
    context, secrets = built[0]
    assert secrets == {"refresh_token": "rt"} and context.tokens.access_token() == "token"
    assert not hasattr(ProviderContext(tenant_id="t", mailbox_id="m", email="e"), "imap")
    assert len(stored(mailbox)) == 2


def test_an_unknown_kind_is_a_permanent_error_not_a_silent_default(aws):
    mailbox = make_mailbox(mailbox_type="carrier-pigeon")
    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == \
        {"batchItemFailures": []}
    fresh = reload(mailbox)
    assert fresh.sync_stage == "error" and "carrier-pigeon" in fresh.last_error["detail"]


# --- interface gaps ----------------------------------------------------------------------------------------

def test_changed_refs_already_stored_are_not_fetched_again(aws):
    """Guards against Graph delta / Gmail label changes re-fetching and re-writing known messages."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3, "sent": 0})
    engine.sync_mailbox(mailbox, provider, FAR)
    fetched = list(provider.fetched)
    provider.add("inbox", 1)
    provider.relist["inbox"] = [1, 2, 3, 4]          # three known; uid 4 is listed as new AND changed
    result = engine.sync_mailbox(reload(mailbox), provider, FAR)
    assert result.counts.known == 3
    assert provider.fetched[len(fetched):] == ["1:4"]   # only the unknown one (listed as new and changed)
    assert len(stored(mailbox)) == 4


def test_a_vanished_item_is_recorded_and_the_rest_of_the_batch_stored(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3, "sent": 0})
    provider.vanish.add("1:2")
    result = engine.sync_mailbox(mailbox, provider, FAR)
    assert result.counts.imported == 2 and "vanished" in result.folder_errors["inbox"]["detail"]
    assert provider.fetched == ["1:1", "1:3"]       # no one-by-one refetch: the provider said which one


# --- throttling --------------------------------------------------------------------------------------------

def test_a_throttled_job_is_acknowledged_and_requeued_with_the_providers_delay(aws):
    """Guards against rate limits counting toward maxReceiveCount and dead-lettering a healthy mailbox."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2})
    provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.THROTTLED, "429", retry_after=120)]
    for receive_count in (1, 5, 9):                  # however often it happens, the record succeeds
        provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.THROTTLED, "429", retry_after=120)]
        event = job_event((mailbox.tenant_id, mailbox.mailbox_id), receive_count=receive_count)
        Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(actions=[Mailbox.not_before.remove()])
        assert worker.handle_batch(event, FakeContext(), provider_factory=lambda m: provider) == \
            {"batchItemFailures": []}
    fresh = reload(mailbox)
    assert fresh.sync_stage == "throttled" and fresh.last_error["code"] == "throttled"
    assert fresh.not_before > time.time() + 100 and fresh.lease_owner is None
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=aws["sync_queue_url"], AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) == 3
    status = json.loads(json.dumps(__import__("chalicelib.sync.status", fromlist=["x"]).sync_status(fresh)))
    assert status["throttled_until"] is not None


def test_a_job_arriving_while_throttled_is_deferred_without_calling_the_provider(aws):
    mailbox = make_mailbox(not_before=time.time() + 600)
    provider = FakeProvider({"inbox": 2})
    assert run_worker(mailbox, provider) == {"batchItemFailures": []}
    assert provider.changes_calls == [] and stored(mailbox) == []
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=aws["sync_queue_url"],
                                                          AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) == 1


def test_a_mailbox_wide_failure_is_not_mistaken_for_a_vanished_folder(aws):
    """Guards against an inactive Microsoft mailbox (404 for the whole mailbox) being skipped silently."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2})
    provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.PERMANENT, "mailbox is inactive")]
    run_worker(mailbox, provider)
    fresh = reload(mailbox)
    assert fresh.sync_stage == "error" and fresh.last_error["code"] == "permanent"
    assert fresh.last_success_at is None


# --- push coalescing ---------------------------------------------------------------------------------------

def test_ten_pushes_enqueue_one_job_and_the_lease_reopens_the_gate(aws):
    mailbox = make_mailbox()
    outcomes = [request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push") for _ in range(10)]
    assert outcomes.count("queued") == 1 and outcomes.count("coalesced") == 9
    assert len(queued(aws["sync_queue_url"])) == 1
    held, _ = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id)
    assert reload(mailbox).sync_queued_at is None
    assert request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push") == "coalesced"   # during the sync
    assert reload(mailbox).sync_requested is True and queued(aws["sync_queue_url"]) == []
    assert lease.release(held) is True                                                    # → one follow-up
    assert request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push") == "queued"


def test_a_lost_queued_job_does_not_block_pushes_forever(aws):
    mailbox = make_mailbox(sync_queued_at=time.time() - 3600)
    assert request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push") == "queued"


# --- cursor items ------------------------------------------------------------------------------------------

def test_cursors_live_in_their_own_items_not_in_the_mailbox(aws):
    mailbox = make_mailbox()
    engine.sync_mailbox(mailbox, FakeProvider({"inbox": 3, "sent": 1}), FAR)
    raw = boto3.client("dynamodb").get_item(TableName=Mailbox.Meta.table_name,
                                            Key={"tenant_id": {"S": mailbox.tenant_id},
                                                 "mailbox_id": {"S": mailbox.mailbox_id}})["Item"]
    assert "cursors" not in raw
    items = {item.scope: item.cursor for item in SyncCursor.query(f"{mailbox.tenant_id}#{mailbox.mailbox_id}")}
    assert items == {"inbox": "1:3", "sent": "1:1"}


def test_legacy_cursors_on_the_mailbox_are_migrated_without_refetching(aws):
    mailbox = make_mailbox(cursors={"inbox": {"cursor": "1:3", "updated_at": "2026-11-30T00:00:00Z"},
                                    "sent": {"cursor": "1:1", "updated_at": "2026-11-30T00:00:00Z"}})
    provider = FakeProvider({"inbox": 4, "sent": 1})
    engine.sync_mailbox(mailbox, provider, FAR)
    assert provider.fetched == ["1:4"]                 # continued from the legacy cursor
    fresh = reload(mailbox)
    assert fresh.cursors is None
    assert cursor_field(fresh, "inbox") == "1:4" and cursor_field(fresh, "sent") == "1:1"


def test_a_cursor_write_by_a_worker_that_lost_its_lease_changes_nothing(aws):
    mailbox = make_mailbox()
    held, _ = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id, now=time.time() - 10_000, ttl=1)
    lease.acquire(mailbox.tenant_id, mailbox.mailbox_id)              # another worker took over
    with pytest.raises(lease.LeaseLost):
        engine.sync_mailbox(reload(mailbox), FakeProvider({"inbox": 2}), FAR, lease=held)
    assert cursor_field(reload(mailbox), "inbox") is None


# --- lifecycle ---------------------------------------------------------------------------------------------

def test_a_failed_sync_keeps_the_follow_up_requested_meanwhile(aws):
    """Guards against release clearing sync_requested and the failure path then skipping the enqueue."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2})

    def push_then_fail():
        assert request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push") == "coalesced"
        raise ProviderError(ErrorCode.PERMANENT, "server said no")

    provider.fail_on[("changes", "inbox")] = [push_then_fail]
    assert run_worker(mailbox, provider) == {"batchItemFailures": []}
    assert [json.loads(body)["reason"] for body in map(json.dumps, queued(aws["sync_queue_url"]))] == \
        ["follow_up"]


def test_suspended_tenants_are_neither_scheduled_nor_synced_and_resume_when_active(aws):
    mailbox = make_mailbox("tnt_paused")
    other = make_mailbox("tnt_running")
    Tenant("tnt_paused").update(actions=[Tenant.status.set("suspended")])
    worker.tenant_may_sync.clear()
    counts = scheduler.run_tick(jitter_seconds=0)
    assert counts["enqueued"] == 1 and counts["skipped_tenants"] == 1
    assert [body["mailbox_id"] for body in queued(aws["sync_queue_url"])] == [other.mailbox_id]
    provider = FakeProvider({"inbox": 2})
    run_worker(mailbox, provider)
    assert provider.changes_calls == [] and stored(mailbox) == []
    Tenant("tnt_paused").update(actions=[Tenant.status.set("active"), Tenant.plan.set("free")])
    worker.tenant_may_sync.clear()
    run_worker(mailbox, provider)
    assert stored(mailbox) == []                       # active, but the plan has no mailbox connection
    Tenant("tnt_paused").update(actions=[Tenant.plan.set("standard")])
    worker.tenant_may_sync.clear()
    assert scheduler.run_tick(jitter_seconds=0)["enqueued"] == 2
    run_worker(mailbox, provider)
    assert len(stored(mailbox)) == 2


def test_counts_are_exact_when_a_sync_dies_before_its_cursor_is_saved(aws, monkeypatch):
    """Guards against counts saved with the cursor: messages of an unsaved page were never counted."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 5, "sent": 0})
    real_save = engine.cursors.save
    monkeypatch.setattr(engine.cursors, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        engine.sync_mailbox(mailbox, provider, FAR)
    monkeypatch.setattr(engine.cursors, "save", real_save)
    engine.sync_mailbox(reload(mailbox), provider, FAR)
    engine.sync_mailbox(reload(mailbox), provider, FAR)
    assert counts_of(reload(mailbox)) == {"imported": 5, "skipped": 0, "removed": 0}
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 5


# --- dependencies point one way ----------------------------------------------------------------------------

LAZY_ON_PURPOSE = {
    # A Lambda function loads only its own handler's modules (not a cycle).
    "app.py",
    # The operator CLI's `operator-key` command must work without AWS libraries.
    "chalicelib/admin.py",
}


def test_no_import_cycles_are_dodged_with_function_level_imports():
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]:
        relative = str(path.relative_to(ROOT))
        if relative in LAZY_ON_PURPOSE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("chalicelib"):
                        offenders.append(f"{relative}:{inner.lineno} {inner.module}")
    assert offenders == []


def test_dependencies_point_one_way_from_the_api_to_the_services():
    """The HTTP layer (`chalicelib/api`) calls the services; nothing below it imports it back (the services take a
    `tenancy.principal.Principal`, not the API's request context)."""
    offenders = []
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[1] == "api":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{relative}:{node.lineno} {name}" for name in names
                          if name == "chalicelib.api" or name.startswith("chalicelib.api.")]
    assert offenders == []


# --- push lifecycle and the outbox sweeper (renewer) -------------------------------------------------------

class PushingProvider(FakeProvider):
    """A provider kind with the push protocol (Gmail watch / Graph subscriptions stand-in)."""

    def __init__(self, fail: ProviderError | None = None):
        super().__init__({"inbox": 0})
        self.calls: list[str] = []
        self.fail = fail

    def push_configured(self):
        return True

    def start_push(self):
        self.calls.append("start")
        if self.fail:
            raise self.fail
        return PushState(expires_at=isoformat(utcnow() + timedelta(days=3)), resource={"subscription": "s-1"},
                         secrets={"client_state": "cs-secret"})

    def renew_push(self, state):
        self.calls.append(f"renew {state.resource['subscription']}")
        if self.fail:
            raise self.fail
        return PushState(expires_at=isoformat(utcnow() + timedelta(days=3)), resource=state.resource)

    def stop_push(self, state):
        self.calls.append("stop")


PushSubscriber.register(PushingProvider)


@pytest.fixture
def push_kind(monkeypatch):
    def install(provider):
        monkeypatch.setitem(kinds._KINDS, "pushkind", kinds.ProviderKind(
            "pushkind", lambda mailbox, credentials, timeout: ProviderContext(mailbox.tenant_id, mailbox.mailbox_id,
                                                                               mailbox.email),
            lambda context: provider, oauth=True))
        return provider
    return install


def test_the_renewer_starts_then_renews_push_daily_and_stores_its_secret_sealed(aws, push_kind):
    provider = push_kind(PushingProvider())
    mailbox = make_mailbox(mailbox_type="pushkind")
    CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).save({"refresh_token": "rt"}, 0)
    imap_box = make_mailbox()                                   # IMAP has no push protocol: untouched
    assert renewer.run()["push_started"] == 1
    fresh = reload(mailbox)
    assert fresh.push_state == {"subscription": "s-1"} and fresh.push_expires_at
    assert CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load().secrets == \
        {"refresh_token": "rt", "client_state": "cs-secret"}
    assert reload(imap_box).push_state is None
    assert fresh.push_renewed_at
    assert renewer.run()["push_renewed"] == 0 and provider.calls == ["start"]   # not due: no provider call
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(           # 22 h later: still not due
        actions=[Mailbox.push_renewed_at.set(isoformat(utcnow() - timedelta(hours=22)))])
    assert renewer.run()["push_renewed"] == 0 and provider.calls == ["start"]
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(           # a day later: renewed though 2 days are left
        actions=[Mailbox.push_renewed_at.set(isoformat(utcnow() - timedelta(hours=23)))])
    assert renewer.run()["push_renewed"] == 1 and provider.calls == ["start", "renew s-1"]
    assert renewer.run()["push_renewed"] == 0                        # renewed now: not due again today
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(           # about to lapse: renewed whatever the cadence
        actions=[Mailbox.push_expires_at.set(isoformat(utcnow() + timedelta(hours=5)))])
    assert renewer.run()["push_renewed"] == 1 and provider.calls == ["start", "renew s-1", "renew s-1"]


def test_a_push_that_cannot_be_renewed_shows_and_warns_once(aws, push_kind):
    push_kind(PushingProvider(fail=ProviderError(ErrorCode.TEMPORARY, "topic not found")))
    mailbox = make_mailbox(mailbox_type="pushkind", push_state={"subscription": "s-1"},
                           push_expires_at=isoformat(utcnow() + timedelta(hours=2)))
    assert renewer.run()["push_failed"] == 1
    renewer.run()
    fresh = reload(mailbox)
    assert fresh.push_error["code"] == "temporary"
    from chalicelib.sync.status import sync_status
    assert sync_status(fresh)["push_error"]["detail"] == "topic not found"
    assert len(events.list_events(mailbox.tenant_id, "mailbox.push_expiring")) == 1


def test_the_renewer_leaves_a_suspended_tenants_push_alone_and_restores_it_on_reactivation(aws, push_kind):
    """Guards against renewing Gmail watches / Graph subscriptions (provider calls, pushes that keep coming) for
    a tenant that may not sync, and against push staying dead once the tenant is active again: its registration
    lapsed meanwhile, so the first run after reactivation renews it (a lapsed Graph subscription answers the
    renewal 404 and is made afresh: tests/integration/test_graph_push.py)."""
    provider = push_kind(PushingProvider())
    mailbox = make_mailbox("tnt_paused", mailbox_type="pushkind", push_state={"subscription": "s-1"},
                           push_expires_at=isoformat(utcnow() + timedelta(hours=5)), sync_stage="syncing")
    CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).save({"refresh_token": "rt"}, 0)
    Tenant("tnt_paused").update(actions=[Tenant.status.set("suspended")])
    counts = renewer.run()
    assert provider.calls == [] and counts["push_renewed"] == 0 and counts["suspended"] == 1
    assert counts["stuck"] == 0 and drain(aws["sync_queue_url"]) == []   # its worker would skip the job anyway
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(          # the suspension outlasted the registration
        actions=[Mailbox.push_expires_at.set(isoformat(utcnow() - timedelta(days=2)))])
    assert renewer.run()["push_renewed"] == 0 and provider.calls == []
    Tenant("tnt_paused").update(actions=[Tenant.status.set("active")])
    counts = renewer.run()
    assert counts["push_renewed"] == 1 and counts["suspended"] == 0 and provider.calls == ["renew s-1"]
    assert reload(mailbox).push_expires_at > isoformat(utcnow())
    assert [job["mailbox_id"] for job in queued(aws["sync_queue_url"])] == [mailbox.mailbox_id]   # stuck: resumed


def test_the_renewer_completes_what_a_dead_sync_left_owing(aws, monkeypatch):
    """Guards against a crash between storing and pairing/announcing losing both for good."""
    mailbox = make_mailbox()
    monkeypatch.setattr(effects, "pair_message", lambda message: (_ for _ in ()).throw(RuntimeError("died")))
    monkeypatch.setattr(effects, "pair_page", lambda messages, mailbox: {m.message_id: None for m in messages})
    engine.sync_mailbox(mailbox, FakeProvider({"inbox": 3, "sent": 0}), FAR)
    assert events.list_events(mailbox.tenant_id, "message.created") == []
    paired = []
    monkeypatch.setattr(effects, "pair_page", lambda messages, mailbox: {
        m.message_id: paired.append(m) or PairingResult(m.message_id, "auto") for m in messages})
    assert renewer.run()["effects_completed"] == 0                    # too recent: a live sync may still own it
    assert renewer.run(now=time.time() + 3600)["effects_completed"] == 3
    assert len(paired) == 3 and len(events.list_events(mailbox.tenant_id, "message.created")) == 3
    assert counts_of(reload(mailbox))["imported"] == 3
    assert renewer.run(now=time.time() + 3600)["effects_completed"] == 0


def test_a_page_announces_its_new_links_with_its_messages_in_one_queue_message(aws):
    """Guards the page path against a stored event and an SQS message per paired message (two calls a
    message for a CRM whose directory knows the senders), and against a redelivery doubling them."""
    from chalicelib.pairing import directory
    from tests.sync_helpers import by_operation_and_table, deliver_events, dynamodb_calls
    mailbox = make_mailbox()
    directory.put_record(mailbox.tenant_id, "company", "c-org", {"name": "Org", "domains": ["example.org"]})
    drain(aws["events_queue_url"])
    with dynamodb_calls(by_operation_and_table) as calls:
        engine.sync_mailbox(mailbox, FakeProvider({"inbox": 5, "sent": 0}), FAR)
    assert not [name for name in calls if name.startswith("PutItem:") and name.endswith("events")], dict(calls)
    sent = drain(aws["events_queue_url"])
    assert len(sent) == 1 and sent[0]["body"]["kind"] == "events"
    carried = sent[0]["body"]["events"]
    assert [e["type"] for e in carried] == ["message.created"] * 5 + ["message.paired"] * 5
    assert all(e["payload"]["links"] == [{"type": "company", "id": "c-org", "source": "auto",
                                          "reason": e["payload"]["links"][0]["reason"]}]
               for e in carried if e["type"] == "message.paired")
    sqs = boto3.client("sqs")
    for _ in range(2):                                      # delivered, then delivered again
        sqs.send_message(QueueUrl=aws["events_queue_url"], MessageBody=json.dumps(sent[0]["body"]))
        deliver_events(aws["events_queue_url"])
    paired = events.list_events(mailbox.tenant_id, "message.paired")
    assert sorted(e.event_id for e in paired) == sorted(e["event_id"] for e in carried[5:])


def test_a_page_writes_its_links_in_a_few_transactions_and_a_replay_adds_none(aws):
    """Guards the page path against one transaction per link (30 paired messages cost 30 link transactions),
    and the packed write against doubling links or counts when a replay finds them written."""
    from chalicelib.models.pairing import MessageLink
    from chalicelib.pairing import directory
    from chalicelib.pairing.page import pair_page
    from tests.sync_helpers import by_operation, dynamodb_calls
    mailbox = make_mailbox()
    directory.put_record(mailbox.tenant_id, "company", "c-org", {"name": "Org", "domains": ["example.org"]})
    with dynamodb_calls(by_operation) as calls:
        engine.sync_mailbox(mailbox, FakeProvider({"inbox": 30, "sent": 0}), FAR)
    assert calls["TransactWriteItems"] <= 8, dict(calls)      # per page: insert, settle, links (was 30 for links)
    messages = list(Message.scan())
    assert len(messages) == 30 and all(m.link_count == 1 for m in messages)
    assert sum(1 for _ in MessageLink.scan()) == 30
    replay = pair_page(messages, reload(mailbox))               # a replay: every link is there already
    assert all(r is not None and r.links == [] for r in replay.values())
    assert all(Message.get(m.message_id).link_count == 1 for m in messages)
    assert sum(1 for _ in MessageLink.scan()) == 30
