"""Graph change notifications end to end: subscriptions created through the fake (which performs the
validation handshake against the in-process app), notifications and lifecycle events POSTed by the fake."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.tenant import Tenant
from chalicelib.providers.base import PushState
from chalicelib.providers.kinds import provider_for
from chalicelib.push import tenant_may_sync
from chalicelib.sync import push, renewer
from chalicelib.sync.push import save_state
from chalicelib.sync.worker import handle_batch
from chalicelib.timeutil import parse_iso, utcnow
from tests.graph_helpers import ADDRESS, api_deliver, outlook_mailbox, raw_mail
from tests.sync_helpers import FakeContext, drain, job_event, receive_event, reload

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)> & \"quotes\" Validation: tést"


@pytest.fixture
def pushed(api, aws, fake_ms):
    """An outlook mailbox with live subscriptions (as the renewer leaves it)."""
    fake_ms.deliver = api_deliver(api)
    mailbox = outlook_mailbox(fake_ms)
    state = provider(mailbox).start_push()
    save_state(reload(mailbox), state)
    drain(aws["sync_queue_url"])
    return reload(mailbox)


def provider(mailbox):
    mailbox = reload(mailbox)
    return provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))


def test_validation_handshake_echoes_the_decoded_token_as_plain_text(api):
    """Guards against: reflecting a validation token as HTML (XSS) or altering it (Graph refuses the URL)."""
    result = api("POST", f"/v1/push/graph?validationToken={quote(HOSTILE)}", body=b"",
                 headers={"content-type": "text/plain"})
    assert result.status == 200 and result.body == HOSTILE
    assert result.headers["content-type"].startswith("text/plain")
    assert result.headers["x-content-type-options"] == "nosniff"
    lifecycle = api("POST", f"/v1/push/graph/lifecycle?validationToken={quote(HOSTILE)}", body=b"")
    assert lifecycle.status == 200 and lifecycle.body == HOSTILE


def test_subscriptions_are_created_per_folder_after_the_handshake(api, aws, fake_ms):
    """Guards against: subscriptions Graph would refuse (handshake, expiry > 4,230 min, clientState > 128)."""
    fake_ms.deliver = api_deliver(api)
    fake_ms.validation_token = HOSTILE
    mailbox = outlook_mailbox(fake_ms)
    state = provider(mailbox).start_push()
    assert len(fake_ms.validations) == 4 and all(took < 10 for _, took in fake_ms.validations)
    subs = {s.folder: s for s in fake_ms.subscriptions.values()}
    assert set(subs) == {"inbox", "sentitems"} and state.resource["subscriptions"].keys() == {"inbox", "sent"}
    client_state = state.secrets["graph_client_state"]
    assert all(s.client_state == client_state and s.change_type == "created" for s in subs.values())
    assert len(client_state) <= 128
    assert subs["inbox"].notification_url == "https://mailbridge.test/v1/push/graph"
    assert subs["inbox"].lifecycle_url == "https://mailbridge.test/v1/push/graph/lifecycle"
    assert parse_iso(state.expires_at) <= utcnow() + timedelta(minutes=4230)
    assert client_state not in str(state.resource)
    assert fake_ms.missing_immutable_id == 0


def test_a_failed_handshake_creates_nothing(api, aws, fake_ms):
    """Guards against: a half-registered mailbox when Graph cannot validate the notification URL."""
    fake_ms.deliver = lambda url, body, headers: (200, {"Content-Type": "text/html"}, b"nope")
    mailbox = outlook_mailbox(fake_ms)
    with pytest.raises(Exception):
        provider(mailbox).start_push()
    assert fake_ms.subscriptions == {}


def test_notification_requests_a_sync_without_calling_graph(aws, fake_ms, pushed):
    """Guards against: calling Graph inside the webhook (slow answers make Graph drop the subscription)."""
    message_id = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    before = len(fake_ms.graph_requests)
    answers = fake_ms.notify(ADDRESS, "inbox", message_id)
    assert [status for status, _, _ in answers] == [202]
    assert len(fake_ms.graph_requests) == before
    jobs = drain(aws["sync_queue_url"])
    assert [(j["body"]["mailbox_id"], j["body"]["reason"]) for j in jobs] == [(pushed.mailbox_id, "push")]


def test_client_state_mismatch_is_dropped(aws, fake_ms, pushed):
    """Guards against: anyone who learns the webhook URL triggering syncs with forged notifications."""
    message_id = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    answers = fake_ms.notify(ADDRESS, "inbox", message_id, client_state="forged-" + "x" * 40)
    assert [status for status, _, _ in answers] == [202]
    assert drain(aws["sync_queue_url"]) == []


def test_unknown_subscription_with_a_valid_client_state_is_dropped(api, aws, fake_ms, pushed):
    """Guards against: notifications of a removed subscription still triggering syncs."""
    client_state = CredentialStore(pushed.tenant_id, pushed.mailbox_id).load().secrets["graph_client_state"]
    body = {"value": [{"subscriptionId": "not-ours", "clientState": client_state, "changeType": "created"}]}
    assert api("POST", "/v1/push/graph", json_body=body).status == 202
    assert drain(aws["sync_queue_url"]) == []


def settle_in_the_worker(aws, mailbox) -> dict:
    """Run the queued job(s) through the worker, as the sync queue would."""
    event = receive_event(aws["sync_queue_url"], 10)
    assert event["Records"], "the lifecycle event asked for no sync"
    return handle_batch(event, FakeContext())


def test_lifecycle_reauthorization_required_is_recorded_then_the_worker_reauthorizes(aws, fake_ms, pushed):
    """Guards against: subscriptions lapsing after Graph asks for reauthorization — and against calling Graph
    inside the webhook (Graph wants its 2xx within 3 s; the endpoints only verify, record and enqueue)."""
    sub_id = pushed.push_state["subscriptions"]["inbox"]
    before = len(fake_ms.graph_requests)
    status, _, _ = fake_ms.lifecycle(sub_id, "reauthorizationRequired")
    assert status == 202 and len(fake_ms.graph_requests) == before
    assert reload(pushed).push_lifecycle["event"] == "reauthorizationRequired"
    assert settle_in_the_worker(aws, pushed) == {"batchItemFailures": []}
    assert ("POST", f"/subscriptions/{sub_id}/reauthorize") in fake_ms.requests_for(ADDRESS)
    assert reload(pushed).push_error is None and reload(pushed).push_lifecycle is None


def test_lifecycle_subscription_removed_resubscribes_and_syncs(aws, fake_ms, pushed):
    """Guards against: push silently stopping after Graph removed a subscription, or the mail that arrived
    meanwhile waiting for the schedule."""
    old = pushed.push_state["subscriptions"]
    old_secret = CredentialStore(pushed.tenant_id, pushed.mailbox_id).load().secrets["graph_client_state"]
    meanwhile = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    before = len(fake_ms.graph_requests)
    status, _, _ = fake_ms.lifecycle(old["inbox"], "subscriptionRemoved")
    assert status == 202 and len(fake_ms.graph_requests) == before
    assert settle_in_the_worker(aws, pushed) == {"batchItemFailures": []}
    mailbox = reload(pushed)
    new = mailbox.push_state["subscriptions"]
    assert set(new.values()) == set(fake_ms.subscriptions) and not set(new.values()) & set(old.values())
    new_secret = CredentialStore(pushed.tenant_id, pushed.mailbox_id).load().secrets["graph_client_state"]
    assert new_secret != old_secret and mailbox.push_key != pushed.push_key and mailbox.push_lifecycle is None
    assert meanwhile in stored_ids(pushed)                         # the job that settled it synced too
    message_id = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(2))
    assert [status for status, _, _ in fake_ms.notify(ADDRESS, "inbox", message_id)] == [202]
    assert len(drain(aws["sync_queue_url"])) == 1                  # the new subscription's clientState is accepted


def test_a_lifecycle_event_whose_job_was_lost_is_settled_by_the_renewer(aws, fake_ms, pushed, monkeypatch):
    """Guards against: an owed lifecycle event forgotten when its queue message is lost."""
    from chalicelib.sync import push
    status, _, _ = fake_ms.lifecycle(pushed.push_state["subscriptions"]["sent"], "subscriptionRemoved")
    assert status == 202
    drain(aws["sync_queue_url"])                                    # the job is lost, its marker aged out
    reload(pushed).update(actions=[Mailbox.sync_queued_at.remove()])
    assert push.maintain(reload(pushed), provider_factory=provider) == "current"    # still its job's to settle
    assert reload(pushed).push_lifecycle is not None and not fake_ms.requests_for(ADDRESS, "/subscriptions")[2:]
    monkeypatch.setattr(push, "utcnow", lambda: utcnow() + push.SETTLE_AFTER)
    assert push.maintain(reload(pushed), provider_factory=provider) == "resubscribed"
    assert reload(pushed).push_lifecycle is None and set(reload(pushed).push_state["subscriptions"].values()) == \
        set(fake_ms.subscriptions)
    assert [j["body"]["reason"] for j in drain(aws["sync_queue_url"])] == ["push"]


def test_lifecycle_missed_requests_a_sync(aws, fake_ms, pushed):
    """Guards against: missed notifications leaving mail unsynced until the next schedule."""
    status, _, _ = fake_ms.lifecycle(pushed.push_state["subscriptions"]["sent"], "missed")
    assert status == 202
    assert [j["body"]["reason"] for j in drain(aws["sync_queue_url"])] == ["push"]


def test_renew_patches_expiry_and_stop_deletes(aws, fake_ms, pushed):
    """Guards against: renewals that recreate subscriptions needlessly or leave them behind on stop."""
    graph = provider(pushed)
    current = PushState(expires_at=pushed.push_expires_at, resource=pushed.push_state)
    renewed = graph.renew_push(current)
    assert renewed.resource == pushed.push_state and renewed.secrets is None
    assert sorted(m for m, p in fake_ms.requests_for(ADDRESS, "/subscriptions/")) == ["PATCH", "PATCH"]
    graph.stop_push(renewed)
    assert fake_ms.subscriptions == {}
    again = graph.renew_push(renewed)          # both gone at Graph: subscribe afresh
    assert len(fake_ms.subscriptions) == 2 and again.secrets["graph_client_state"]


def test_a_notification_brings_the_new_message_in_on_the_next_worker_pass(aws, fake_ms, pushed):
    """Guards against: a push that queues a job whose sync does not pick the new message up."""
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    handle_batch(job_event((pushed.tenant_id, pushed.mailbox_id)), FakeContext())
    assert stored_ids(pushed) and drain(aws["sync_queue_url"]) == []
    before = set(stored_ids(pushed))
    message_id = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(2))
    assert [status for status, _, _ in fake_ms.notify(ADDRESS, "inbox", message_id)] == [202]
    event = receive_event(aws["sync_queue_url"], 10)
    assert len(event["Records"]) == 1
    assert handle_batch(event, FakeContext()) == {"batchItemFailures": []}
    assert set(stored_ids(pushed)) - before == {message_id}


def stored_ids(mailbox) -> list[str]:
    return [m.provider_id for m in Message.by_mailbox.query(mailbox.mailbox_id)]


def test_a_forged_lifecycle_notification_calls_nothing_and_queues_nothing(api, aws, fake_ms, pushed):
    """Guards against: anyone who learns the lifecycle URL making mailbridge resubscribe (Graph calls, a new
    clientState) or sync by POSTing `subscriptionRemoved` with a guessed clientState."""
    sub_id = pushed.push_state["subscriptions"]["inbox"]
    before = len(fake_ms.graph_requests)
    for event in ("subscriptionRemoved", "reauthorizationRequired", "missed"):
        body = {"value": [{"subscriptionId": sub_id, "clientState": "forged-" + "x" * 40, "lifecycleEvent": event,
                           "subscriptionExpirationDateTime": pushed.push_expires_at}]}
        assert api("POST", "/v1/push/graph/lifecycle", json_body=body).status == 202
    assert len(fake_ms.graph_requests) == before and drain(aws["sync_queue_url"]) == []
    assert reload(pushed).push_state == pushed.push_state and reload(pushed).push_key == pushed.push_key


def test_the_renewer_patches_the_subscriptions_a_day_after_and_keeps_them_ahead_of_expiry(aws, fake_ms, pushed,
                                                                                          monkeypatch):
    """Guards against: Graph subscriptions (at most 4,230 minutes for messages) renewed only when about to
    lapse, or not at all, so notifications silently stop."""
    from chalicelib.sync import push
    graph = lambda mailbox: provider(mailbox)                                      # noqa: E731
    assert push.maintain(reload(pushed), provider_factory=graph) == "current"
    later = utcnow() + timedelta(hours=25)
    monkeypatch.setattr(push, "utcnow", lambda: later)
    assert push.maintain(reload(pushed), provider_factory=graph) == "renewed"
    renewed = reload(pushed)
    assert sorted(m for m, _ in fake_ms.requests_for(ADDRESS, "/subscriptions/")) == ["PATCH", "PATCH"]
    assert renewed.push_state == pushed.push_state and renewed.push_expires_at >= pushed.push_expires_at
    assert all(sub.expires >= renewed.push_expires_at[:19] for sub in fake_ms.subscriptions.values())


def test_a_suspended_tenants_notifications_are_acknowledged_and_queue_nothing(api, aws, fake_ms, pushed,
                                                                              monkeypatch):
    """Guards against a suspended tenant's mailbox syncing on Graph notifications; a verified lifecycle event is
    still recorded (not settled: nothing calls Graph for the tenant) so the renewer settles it on reactivation."""
    Tenant(pushed.tenant_id).update(actions=[Tenant.status.set("suspended")])
    message_id = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    assert [status for status, _, _ in fake_ms.notify(ADDRESS, "inbox", message_id)] == [202]
    sub_id = pushed.push_state["subscriptions"]["sent"]
    for event in ("missed", "subscriptionRemoved"):
        assert fake_ms.lifecycle(sub_id, event)[0] == 202
    assert drain(aws["sync_queue_url"]) == []
    assert reload(pushed).push_lifecycle["event"] == "subscriptionRemoved"
    forged = {"value": [{"subscriptionId": sub_id, "clientState": "forged-" + "x" * 40,
                         "lifecycleEvent": "reauthorizationRequired"}]}
    assert api("POST", "/v1/push/graph/lifecycle", json_body=forged).status == 202
    assert reload(pushed).push_lifecycle["event"] == "subscriptionRemoved"     # verification still comes first
    Tenant(pushed.tenant_id).update(actions=[Tenant.status.set("active")])
    tenant_may_sync.clear()
    assert [status for status, _, _ in fake_ms.notify(ADDRESS, "inbox", message_id)] == [202]
    assert [j["body"]["reason"] for j in drain(aws["sync_queue_url"])] == ["push"]
    monkeypatch.setattr(push, "utcnow", lambda: utcnow() + push.SETTLE_AFTER)   # the renewer's next hourly run
    renewer.run(provider_factory=provider)
    mailbox = reload(pushed)
    assert mailbox.push_lifecycle is None and set(mailbox.push_state["subscriptions"].values()) == \
        set(fake_ms.subscriptions) and len(fake_ms.subscriptions) == 2         # subscribed afresh
