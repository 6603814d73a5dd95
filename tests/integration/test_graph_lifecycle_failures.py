"""Graph lifecycle events when Graph misbehaves: the webhook answers 202 (it calls nothing), the worker that
settles the event records the failure and leaves it to the renewer's retry."""
from __future__ import annotations

from chalicelib.credentials.store import CredentialStore
from chalicelib.providers.kinds import provider_for
from chalicelib.sync import push
from chalicelib.sync.push import save_state
from chalicelib.sync.worker import handle_batch
from tests.graph_helpers import ADDRESS, api_deliver, outlook_mailbox
from tests.sync_helpers import FakeContext, drain, job_event, receive_event, reload


def run_worker(aws) -> dict:
    return handle_batch(receive_event(aws["sync_queue_url"], 10), FakeContext())


def provider(mailbox):
    mailbox = reload(mailbox)
    return provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))


def pushed_mailbox(api, aws, fake):
    fake.deliver = api_deliver(api)
    mailbox = reload(outlook_mailbox(fake))
    with provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox)) as graph:
        save_state(mailbox, graph.start_push())
    drain(aws["sync_queue_url"])
    return reload(mailbox)


def test_reauthorization_falls_back_to_a_renewal(api, aws, fake_ms):
    """Guards against: a subscription lapsing because the reauthorize call failed once."""
    mailbox = pushed_mailbox(api, aws, fake_ms)
    sub_id = mailbox.push_state["subscriptions"]["inbox"]
    fake_ms.inject(500, {"error": {"code": "InternalServerError", "message": "boom"}}, path="/reauthorize")
    status, _, _ = fake_ms.lifecycle(sub_id, "reauthorizationRequired")
    assert status == 202
    assert run_worker(aws) == {"batchItemFailures": []}
    assert [m for m, p in fake_ms.requests_for(ADDRESS, "/subscriptions/")].count("PATCH") == 2
    assert reload(mailbox).push_error is None


def test_a_failed_lifecycle_action_is_recorded_not_a_5xx(api, aws, fake_ms):
    """Guards against: Graph retrying a lifecycle POST forever because we answered 500."""
    mailbox = pushed_mailbox(api, aws, fake_ms)
    sub_id = mailbox.push_state["subscriptions"]["sent"]
    fake_ms.inject(500, {"error": {"code": "InternalServerError", "message": "boom"}}, path="/subscriptions",
                   times=10)
    status, _, _ = fake_ms.lifecycle(sub_id, "subscriptionRemoved")
    assert status == 202
    assert run_worker(aws) == {"batchItemFailures": []}            # the sync itself is not failed by it
    error, owed = reload(mailbox).push_error, reload(mailbox).push_lifecycle
    assert error["code"] == "temporary" and "graph" in error["detail"]
    assert owed["event"] == "subscriptionRemoved" and owed["failed_at"]
    requests = len(fake_ms.graph_requests)
    assert handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == \
        {"batchItemFailures": []}                                   # the next sync: left to the renewer
    assert not [path for _, path, _ in fake_ms.graph_requests[requests:] if path.startswith("/subscriptions")]
    fake_ms.clear_injected()                                         # Graph is back
    assert push.maintain(reload(mailbox), provider_factory=provider) == "resubscribed"
    assert reload(mailbox).push_lifecycle is None and reload(mailbox).push_error is None
