"""Guards the Gmail push endpoint: forged, expired, wrong-audience or wrong-sender tokens queueing syncs, a
push waking another tenant's mailbox, stale historyIds causing work, Google being called from the handler, and
a push not bringing the new message in on the next worker pass."""
from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.config import reset_settings
from chalicelib.models.message import Message
from chalicelib.models.tenant import Tenant
from chalicelib.push import tenant_may_sync
from chalicelib.sync import effects, engine, worker
from devservers.dovecot import free_port
from tests.gmail_fixtures import (AUDIENCE, EMAIL, SERVICE_ACCOUNT, days_ago, gmail_provider, mail,
                                  make_gmail_mailbox, make_gmail_server)
from tests.sync_helpers import FakeContext, drain, receive_event, reload

PATH = "/v1/push/gmail"


def envelope(history_id, email: str = EMAIL) -> dict:
    data = base64.b64encode(json.dumps({"emailAddress": email, "historyId": history_id}).encode()).decode()
    return {"message": {"data": data, "messageId": "1", "message_id": "1", "publishTime": "2026-12-01T00:00:00Z"},
            "subscription": "projects/mb-test/subscriptions/gmail-push"}


def push(api, google, history_id=99_999, *, token: str | None = None, email: str = EMAIL, **claims):
    token = token if token is not None else google.sign_push_token({"aud": AUDIENCE, "email": SERVICE_ACCOUNT,
                                                                    **claims})
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return api("POST", PATH, json_body=envelope(history_id, email), headers=headers)


def queued(aws) -> list[dict]:
    return [m["body"] for m in drain(aws["sync_queue_url"])]


def test_valid_push_queues_one_sync_without_calling_gmail(api, aws, google):
    mailbox = make_gmail_mailbox(google)
    result = push(api, google, "123456")                       # historyId as a string
    assert result.status == 204, result
    jobs = queued(aws)
    assert [(j["mailbox_id"], j["reason"]) for j in jobs] == [(mailbox.mailbox_id, "push")]
    assert set(google.calls) == {"certs"}                         # no Gmail API call, no token refresh
    assert push(api, google, 123457).status == 204                # historyId as a number; keys are cached
    assert google.calls["certs"] == 1


@pytest.mark.parametrize("case,status", [
    ("forged", 401), ("expired", 401), ("missing", 401), ("garbage", 401), ("wrong_audience", 403),
    ("wrong_service_account", 403), ("wrong_issuer", 403), ("unverified_email", 403),
])
def test_inauthentic_pushes_are_rejected_and_queue_nothing(api, aws, google, case, status):
    make_gmail_mailbox(google)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if case == "forged" else None
    now = int(time.time())
    tokens = {
        "forged": lambda: google.sign_push_token({"aud": AUDIENCE, "email": SERVICE_ACCOUNT}, key=other_key),
        "expired": lambda: google.sign_push_token({"aud": AUDIENCE, "email": SERVICE_ACCOUNT, "iat": now - 7200,
                                                   "exp": now - 3600}),
        "missing": lambda: "",
        "garbage": lambda: "not.a.jwt",
        "wrong_audience": lambda: google.sign_push_token({"aud": "https://evil.example/push",
                                                          "email": SERVICE_ACCOUNT}),
        "wrong_service_account": lambda: google.sign_push_token({"aud": AUDIENCE,
                                                                 "email": "evil@x.iam.gserviceaccount.com"}),
        "wrong_issuer": lambda: google.sign_push_token({"aud": AUDIENCE, "email": SERVICE_ACCOUNT,
                                                        "iss": "https://evil.example"}),
        "unverified_email": lambda: google.sign_push_token({"aud": AUDIENCE, "email": SERVICE_ACCOUNT,
                                                            "email_verified": False}),
    }
    result = push(api, google, token=tokens[case]())
    assert result.status == status, result
    assert queued(aws) == []


def test_push_whose_keys_cannot_be_fetched_is_401_and_queues_nothing(api, aws, google, monkeypatch):
    """Guards against an unreachable certs URI turning into a 500 (or an accepted push): Pub/Sub gets a 401 and
    redelivers later."""
    make_gmail_mailbox(google)
    monkeypatch.setenv("MAILBRIDGE_GOOGLE_CERTS_URI", f"http://127.0.0.1:{free_port()}/oauth2/v1/certs")
    reset_settings()
    result = push(api, google)
    assert result.status == 401 and "token keys unavailable" in result.body, result
    assert queued(aws) == []


def test_one_address_in_two_tenants_wakes_only_the_tenant_whose_subscription_signed(api, aws, google):
    mine = make_gmail_mailbox(google, "tnt_a")
    other_server = make_gmail_server(google, "tnt_b", push={"topic": "projects/other-proj/topics/gmail",
                                                            "audience": "https://other.example/push",
                                                            "service_account": "other@o.iam.gserviceaccount.com"})
    theirs = make_gmail_mailbox(google, "tnt_b", server=other_server)
    assert push(api, google).status == 204
    assert [j["mailbox_id"] for j in queued(aws)] == [mine.mailbox_id]
    token = google.sign_push_token({"aud": "https://other.example/push", "email": "other@o.iam.gserviceaccount.com"})
    assert push(api, google, token=token).status == 204
    assert [j["mailbox_id"] for j in queued(aws)] == [theirs.mailbox_id]


def test_stale_history_id_and_unknown_address_are_acknowledged_without_work(api, aws, google):
    make_gmail_mailbox(google, cursors={"inbox": {"cursor": "h:5000"}, "sent": {"cursor": "h:5002"}})
    assert push(api, google, 5000).status == 204
    assert queued(aws) == []
    assert push(api, google, 5001).status == 204
    assert len(queued(aws)) == 1
    token = google.sign_push_token({"aud": "http://127.0.0.1:8000/v1/push/gmail", "email": SERVICE_ACCOUNT})
    assert push(api, google, 7, token=token, email="nobody@gmail.example").status == 204
    assert push(api, google, 7, email="nobody@gmail.example").status == 403   # default audience only
    assert queued(aws) == []


def test_malformed_notification_is_a_400(api, aws, google):
    body = {"message": {"data": base64.b64encode(b"{}").decode()}}
    assert api("POST", PATH, json_body=body).status == 400
    assert api("POST", PATH, json_body={"nothing": 1}).status == 422


def test_push_brings_the_message_in_on_the_next_worker_pass(api, aws, google):
    google.deliver(EMAIL, mail(1), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    engine.sync_mailbox(reload(mailbox), gmail_provider(mailbox), float("inf"), after_store=effects.announce_only)
    new_id = google.deliver(EMAIL, mail(2))
    assert push(api, google, google.accounts[EMAIL].history_id).status == 204
    event = receive_event(aws["sync_queue_url"], 10)
    assert len(event["Records"]) == 1
    worker.handle_batch(event, FakeContext())
    ids = {m.provider_id for m in Message.by_mailbox.query(mailbox.mailbox_id)}
    assert new_id in ids and len(ids) == 2


def test_a_suspended_tenants_push_is_verified_then_acknowledged_without_queueing(api, aws, google):
    """Guards against a suspended tenant's mailbox still being woken by Gmail (a sync job, a worker run) — and
    against skipping verification for it: a forged token is still refused first."""
    mailbox = make_gmail_mailbox(google, "tnt_paused")
    Tenant("tnt_paused").update(actions=[Tenant.status.set("suspended")])
    assert push(api, google, token="not.a.jwt").status == 401
    assert push(api, google).status == 204                       # acknowledged: Pub/Sub must not redeliver
    assert queued(aws) == []
    Tenant("tnt_paused").update(actions=[Tenant.status.set("active")])
    tenant_may_sync.clear()                                       # else within a minute (its cache's TTL)
    assert push(api, google, 100_000).status == 204
    assert [j["mailbox_id"] for j in queued(aws)] == [mailbox.mailbox_id]
