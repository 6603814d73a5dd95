"""Graph lifecycle events when Graph misbehaves: the webhook still answers 202 and the failure is recorded."""
from __future__ import annotations

from chalicelib.credentials.store import CredentialStore
from chalicelib.providers.kinds import provider_for
from chalicelib.sync.push import save_state
from tests.graph_helpers import ADDRESS, api_deliver, outlook_mailbox
from tests.sync_helpers import drain, reload


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
    error = reload(mailbox).push_error
    assert error["code"] == "temporary" and "graph" in error["detail"]
