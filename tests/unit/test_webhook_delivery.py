"""Guards tenant webhook delivery against a real HTTP receiver on loopback: signatures that verify with the
documented recipe, retries on 5xx and timeouts on the documented schedule, dead-letter, replay, recovery
after an outage, SSRF at delivery time, and no secrets or receiver bodies kept."""
from __future__ import annotations

import json
import os
import ssl
import time

import pytest

from chalicelib import backoff
from chalicelib.config import reset_settings
from chalicelib.ids import new_id
from chalicelib.models.webhook import WebhookDelivery
from chalicelib.notify import deliveries, events, notifier, transport
from chalicelib.notify import queue as notify_queue
from devservers.dovecot import make_self_signed
from tests.log_capture import captured
from tests.sync_helpers import FakeContext, receive_event
from tests.webhook_helpers import documented_verify, FakeRecord, Receiver, SimClock, SimQueue

HOUR = 3600
JITTER = backoff.JITTER_FRACTION


verify_webhook = documented_verify()


@pytest.fixture
def hooks(api, tenant, aws, monkeypatch):
    clock = SimClock()
    queue = SimQueue(clock)
    monkeypatch.setattr(deliveries, "clock", clock)
    monkeypatch.setattr(notify_queue, "send", queue.send)
    # the schedule exactly as documented; `test_backoff_schedule_spans_a_day_then_dead_letter` puts the jitter back
    monkeypatch.setattr(backoff, "JITTER_FRACTION", 0.0)
    receiver = Receiver(clock).start()
    put = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": receiver.url})
    assert put.status == 200, put

    class Hooks:
        pass

    h = Hooks()
    h.clock, h.queue, h.receiver, h.secret, h.tenant, h.api, h.aws = clock, queue, receiver, put.json["secret"], \
        tenant, api, aws

    def emit(event_type="message.created", payload=None):
        event = events.emit(tenant["id"], event_type, payload or {"message_id": "msg_1"})
        batch = receive_event(aws["events_queue_url"], 10)
        result = notifier.handle_batch(batch, FakeContext())
        assert result == {"batchItemFailures": []}
        return event

    def delivery(event):
        return WebhookDelivery.get(tenant["id"], deliveries.delivery_id_for(event.event_id))

    h.emit, h.delivery = emit, delivery
    yield h
    receiver.stop()


def test_delivery_is_signed_and_verifies_with_the_documented_recipe(hooks):
    """A receiver following docs/api.md must accept our deliveries and reject tampered, foreign or stale ones."""
    event = hooks.emit("message.created", {"message_id": "msg_1", "mailbox_id": "mbx_1"})
    [hit] = hooks.receiver.hits
    assert hit.path == "/hooks/mailbridge?src=test"
    assert verify_webhook(hooks.secret, hit.headers, hit.body)
    assert hit.json == {"id": event.event_id, "type": "message.created", "created_at": event.created_at,
                        "tenant_id": hooks.tenant["id"], "data": {"message_id": "msg_1", "mailbox_id": "mbx_1"}}
    assert hit.headers["Webhook-Id"] == event.event_id
    assert hit.headers["Content-Type"] == "application/json"
    assert not verify_webhook(hooks.secret, hit.headers, hit.body + b" ")
    assert not verify_webhook("whsec_wrong", hit.headers, hit.body)
    old = {**hit.headers, "Webhook-Timestamp": str(int(time.time()) - 301)}
    assert not verify_webhook(hooks.secret, old, hit.body)  # outside the 5-minute replay window
    d = hooks.delivery(event)
    assert (d.status, d.attempts, d.last_status_code, d.last_error) == ("delivered", 1, 204, "204 No Content")


def test_retries_on_500_with_the_same_event_id_until_delivered(hooks):
    """A 5xx must be retried on schedule with the same event id, and the receiver's body never stored."""
    hooks.receiver.statuses = [500, 503]
    event = hooks.emit()
    assert hooks.delivery(event).status == "pending" and hooks.queue.delays == [60]
    hooks.queue.run_until(hooks.clock.now + 60)
    assert hooks.delivery(event).last_status_code == 503 and hooks.queue.delays == [60, 300]
    hooks.queue.run_until(hooks.clock.now + 300)
    hits = hooks.receiver.hits
    assert len(hits) == 3 and {h.headers["Webhook-Id"] for h in hits} == {event.event_id}
    assert all(verify_webhook(hooks.secret, h.headers, h.body) for h in hits)
    d = hooks.delivery(event)
    assert (d.status, d.attempts, d.last_status_code) == ("delivered", 3, 204)
    assert "SECRET42" not in json.dumps(d.attribute_values)  # the receiver's body is never stored


def test_timeout_is_a_failed_attempt_and_retried(hooks, monkeypatch):
    """A receiver slower than the timeout must not hang the notifier; the attempt fails and is retried."""
    monkeypatch.setattr(transport, "TIMEOUT_SECONDS", 0.3)
    hooks.receiver.delay = 1.0
    event = hooks.emit()
    d = hooks.delivery(event)
    assert (d.status, d.attempts, d.last_error, d.last_status_code) == ("pending", 1, "timeout", None)
    hooks.receiver.delay = 0
    hooks.queue.run_until(hooks.clock.now + 60)
    assert hooks.delivery(event).status == "delivered" and len(hooks.receiver.hits) == 2


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_timeout(hooks, monkeypatch):
    """Guards the timeout as a wall clock: a receiver that sends a header line every 0.2 s never lets one read
    wait 0.5 s, yet must not hold the attempt (and the notifier Lambda) beyond it."""
    monkeypatch.setattr(transport, "TIMEOUT_SECONDS", 0.5)
    hooks.receiver.drip = 0.2
    started = time.monotonic()
    event = hooks.emit()
    assert time.monotonic() - started < 1.5
    d = hooks.delivery(event)
    assert (d.status, d.attempts, d.last_error, d.last_status_code) == ("pending", 1, "timeout", None)


def test_backoff_schedule_spans_a_day_then_dead_letter(hooks, monkeypatch):
    """The retry schedule must span at least 24 h, use SQS delays <= 900 s, then stop at dead_letter; each wait
    is jittered so deliveries that failed together spread out."""
    monkeypatch.setattr(backoff, "JITTER_FRACTION", JITTER)
    hooks.receiver.default_status = 500
    start = hooks.clock.now
    event = hooks.emit()
    hooks.queue.run_until(start + 34 * HOUR)
    times = [hit.at for hit in hooks.receiver.hits]
    assert len(times) == deliveries.MAX_ATTEMPTS == 9
    gaps = [b - a for a, b in zip(times, times[1:])]
    # each wait is its step of the schedule plus 0-20 % jitter (the attempt itself takes a moment of the clock)
    assert all(base <= gap <= base * (1 + JITTER) + 2 for gap, base in zip(gaps, deliveries.BACKOFF_SECONDS)), gaps
    assert any(gap >= base + 2 for gap, base in zip(gaps, deliveries.BACKOFF_SECONDS)), gaps   # jittered
    assert [60, 300, 1800, 3600, 7200, 14400, 28800, 43200] == list(deliveries.BACKOFF_SECONDS)
    assert times[-1] - times[0] >= 24 * HOUR
    assert max(hooks.queue.delays) == 900  # long waits hop through SQS in 15-minute steps
    d = hooks.delivery(event)
    assert (d.status, d.attempts, d.last_status_code) == ("dead_letter", 9, 500)
    assert d.dead_lettered_at and d.next_attempt_at is None and d.due_shard is None
    hooks.queue.run_until(hooks.clock.now + 48 * HOUR)
    assert len(hooks.receiver.hits) == 9 and not hooks.queue.pending


def test_receiver_down_for_an_hour_gets_everything_afterwards(hooks):
    """Events emitted while the receiver was down must all arrive, once each, after it is back."""
    port = hooks.receiver.port
    hooks.receiver.stop()  # connection refused from now on
    start = hooks.clock.now
    emitted = []
    for minute in range(0, 60, 10):
        hooks.queue.run_until(start + minute * 60)
        emitted.append(hooks.emit("message.created", {"message_id": f"msg_{minute}"}).event_id)
    while_down = [hooks.delivery(e) for e in events.list_events(hooks.tenant["id"], "message.created")]
    assert {d.status for d in while_down} == {"pending"}
    assert {d.last_error for d in while_down} == {"connection failed"}   # the log says down, not "timeout"
    hooks.queue.run_until(start + HOUR)
    hooks.receiver.port = port
    hooks.receiver.start()
    hooks.queue.run_until(start + 4 * HOUR)
    received = [hit.headers["Webhook-Id"] for hit in hooks.receiver.hits]
    assert sorted(received) == sorted(emitted)  # each exactly once
    for event in events.list_events(hooks.tenant["id"], "message.created"):
        assert hooks.delivery(event).status == "delivered"


def test_replay_one_and_all_dead_lettered_since(hooks):
    """Replay of one delivery and of all dead letters since a time must redeliver exactly those events."""
    hooks.receiver.default_status = 500
    first = hooks.emit()
    hooks.queue.run_until(hooks.clock.now + 2 * HOUR)
    second = hooks.emit()
    hooks.queue.run_until(hooks.clock.now + 32 * HOUR)
    d1, d2 = hooks.delivery(first), hooks.delivery(second)
    assert d1.status == d2.status == "dead_letter" and d1.dead_lettered_at < d2.dead_lettered_at
    hooks.receiver.default_status = 200
    key = hooks.tenant["key"]

    replayed = hooks.api("POST", f"/v1/webhook/deliveries/{d1.delivery_id}/replay", key=key)
    assert replayed.status == 202 and replayed.json["status"] == "pending" and replayed.json["replays"] == 1
    again = hooks.api("POST", f"/v1/webhook/deliveries/{d1.delivery_id}/replay", key=key)
    assert again.status == 409  # still pending
    hooks.queue.run_until(hooks.clock.now)
    assert hooks.receiver.hits[-1].headers["Webhook-Id"] == first.event_id
    assert (hooks.delivery(first).status, hooks.delivery(first).attempts) == ("delivered", 1)

    # `since` = second's dead-letter time: first (delivered now) is not replayed again
    hits_before = len(hooks.receiver.hits)
    since = d2.dead_lettered_at
    result = hooks.api("POST", "/v1/webhook/deliveries/replay", key=key, json_body={"since": since})
    assert result.status == 202 and result.json == {"replayed": 1, "truncated": False}
    hooks.queue.run_until(hooks.clock.now)
    assert [h.headers["Webhook-Id"] for h in hooks.receiver.hits[hits_before:]] == [second.event_id]
    assert hooks.delivery(second).status == "delivered"
    later = hooks.api("POST", "/v1/webhook/deliveries/replay", key=key, json_body={"since": since})
    assert later.json == {"replayed": 0, "truncated": False}


def test_replay_since_skips_dead_letters_before_the_time(hooks):
    """Replay since a time must leave older dead letters alone."""
    hooks.receiver.default_status = 500
    early = hooks.emit()
    hooks.queue.run_until(hooks.clock.now + 32 * HOUR)
    late = hooks.emit()
    hooks.queue.run_until(hooks.clock.now + 32 * HOUR)
    since = hooks.delivery(late).dead_lettered_at
    assert hooks.delivery(early).dead_lettered_at < since
    result = hooks.api("POST", "/v1/webhook/deliveries/replay", key=hooks.tenant["key"],
                       json_body={"since": since})
    assert result.json["replayed"] == 1
    assert hooks.delivery(early).status == "dead_letter" and hooks.delivery(late).status == "pending"


def test_only_subscribed_public_types_are_delivered(hooks):
    """Internal and unsubscribed event types must never reach the receiver."""
    assert hooks.api("PUT", "/v1/webhook", key=hooks.tenant["key"],
                     json_body={"url": hooks.receiver.url, "event_types": ["signal.created"]}).status == 200
    hooks.emit("directory.changed", {"records": []})
    hooks.emit("message.created")
    signal = hooks.emit("signal.created", {"signal_id": "sig_1"})
    assert [h.json["type"] for h in hooks.receiver.hits] == ["signal.created"]
    assert verify_webhook(hooks.secret, hooks.receiver.hits[0].headers, hooks.receiver.hits[0].body)
    assert [d.event_id for d in WebhookDelivery.query(hooks.tenant["id"])] == [signal.event_id]


def test_duplicate_and_stale_messages_do_not_attempt_twice(hooks):
    """SQS duplicates (delivery or event message) must not cause extra attempts or deliveries."""
    hooks.receiver.statuses = [500]
    event = hooks.emit()
    [message] = [m[2] for m in hooks.queue.pending]
    hooks.queue.send(message, 60)  # SQS at-least-once: the same message twice
    hooks.queue.run_until(hooks.clock.now + 60)
    assert len(hooks.receiver.hits) == 2 and hooks.delivery(event).status == "delivered"
    # the event message itself redelivered: no second delivery item, no new attempt
    events_body = {"tenant_id": hooks.tenant["id"], "event_id": event.event_id, "type": event.type}
    assert notifier.consume(FakeRecord(events_body, 99)) == "consumed"
    assert len(hooks.receiver.hits) == 2


def test_sweep_attempts_deliveries_whose_message_was_lost(hooks):
    """A delivery whose delayed message was lost must still be attempted by the sweep."""
    hooks.receiver.statuses = [500]
    event = hooks.emit()
    hooks.queue.pending.clear()  # the delayed message is lost
    assert deliveries.run_due(hooks.clock.now + 120)["due"] == 0  # not overdue beyond the grace period yet
    counts = deliveries.run_due(hooks.clock.now + 60 + deliveries.SWEEP_GRACE_SECONDS + 1)
    assert counts["delivered"] == 1 and hooks.delivery(event).status == "delivered"


def test_redirects_are_not_followed(hooks):
    """A 3xx must not be followed (SSRF via redirect) and counts as a failed attempt."""
    hooks.receiver.statuses = [302]
    hooks.receiver.extra_headers = {"Location": "http://127.0.0.1:1/elsewhere"}
    event = hooks.emit()
    d = hooks.delivery(event)
    assert d.status == "pending" and d.last_status_code == 302 and "redirect not followed" in d.last_error
    assert len(hooks.receiver.hits) == 1


def test_delivery_time_ssrf_guard_refuses_a_host_that_became_internal(hooks, monkeypatch):
    """A saved URL whose host is now refused must not be dialled at delivery time."""
    monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "")
    reset_settings()
    try:
        event = hooks.emit()
    finally:
        monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
        reset_settings()
    d = hooks.delivery(event)
    assert hooks.receiver.hits == [] and d.status == "pending" and d.last_error == "refused: host not allowed"


def test_test_event_is_delivered_once_synchronously_and_not_logged_as_delivery(hooks):
    """POST /v1/webhook/test must deliver one signed event now, without retries or a log entry."""
    result = hooks.api("POST", "/v1/webhook/test", key=hooks.tenant["key"])
    assert result.status == 200 and result.json["delivered"] is True and result.json["status_code"] == 204
    [hit] = hooks.receiver.hits
    assert hit.json["type"] == "webhook.test" and hit.json["id"] == result.json["event_id"]
    assert verify_webhook(hooks.secret, hit.headers, hit.body)
    assert list(WebhookDelivery.query(hooks.tenant["id"])) == []
    hooks.receiver.default_status = 500
    failed = hooks.api("POST", "/v1/webhook/test", key=hooks.tenant["key"])
    assert failed.json["delivered"] is False and failed.json["status_code"] == 500 and not hooks.queue.pending


def test_deleted_webhook_dead_letters_pending_deliveries(hooks):
    """Deleting the webhook must stop pending deliveries instead of retrying for a day."""
    hooks.receiver.statuses = [500]
    event = hooks.emit()
    assert hooks.api("DELETE", "/v1/webhook", key=hooks.tenant["key"]).status == 204
    hooks.queue.run_until(hooks.clock.now + 60)
    d = hooks.delivery(event)
    assert (d.status, d.last_error) == ("dead_letter", "no webhook configured") and len(hooks.receiver.hits) == 1


def test_short_lambda_budget_queues_the_attempt_instead(hooks, aws):
    """The notifier must not start a 10 s attempt it cannot finish before its Lambda timeout."""
    event = events.emit(hooks.tenant["id"], "message.created", {"message_id": "m"})
    notifier.handle_batch(receive_event(aws["events_queue_url"], 1), FakeContext(remaining_seconds=8))
    assert hooks.receiver.hits == [] and hooks.queue.delays == [0]
    hooks.queue.run_until(hooks.clock.now)
    assert hooks.delivery(event).status == "delivered"


def test_a_batch_runs_out_of_time_midway_and_every_event_is_delivered_once(hooks, monkeypatch):
    """Guards the batched webhook step: deliveries created after the Lambda's time ran out are queued unclaimed
    (not left claimed and unattempted), and a redelivered batch attempts nothing twice."""
    batch = [events.new_event(hooks.tenant["id"], "message.created", {"message_id": f"msg_t{n}"}, new_id("evt"))
             for n in range(4)]
    body = {"kind": events.EVENTS_KIND, "tenant_id": hooks.tenant["id"],
            "events": [events.event_body(e) for e in batch]}
    context = FakeContext(remaining_seconds=300)
    real_post = transport.post

    def post_then_run_out(url, payload, headers):     # time runs out after the second attempt
        outcome = real_post(url, payload, headers)
        if len(hooks.receiver.hits) == 2:
            context.remaining_seconds = 8
        return outcome
    monkeypatch.setattr(transport, "post", post_then_run_out)
    assert notifier.consume(FakeRecord(body, 1), context) == "consumed"
    assert len(hooks.receiver.hits) == 2 and hooks.queue.delays == [0, 0]
    assert [hooks.delivery(e).attempts for e in batch] == [1, 1, 0, 0]
    assert notifier.consume(FakeRecord(body, 2), context) == "consumed"   # redelivered: queues the two again
    hooks.queue.run_until(hooks.clock.now)
    assert sorted(h.json["id"] for h in hooks.receiver.hits) == sorted(e.event_id for e in batch)
    assert all(hooks.delivery(e).status == "delivered" for e in batch)


def test_secret_never_in_logs(hooks):
    """The signing secret must never reach logs (deliveries, rotation, test event)."""
    with captured("DEBUG") as stream:
        hooks.receiver.statuses = [500]
        hooks.emit()
        hooks.queue.run_until(hooks.clock.now + 60)
        rotated = hooks.api("PUT", "/v1/webhook", key=hooks.tenant["key"],
                            json_body={"url": hooks.receiver.url, "rotate_secret": True})
        hooks.api("POST", "/v1/webhook/test", key=hooks.tenant["key"])
    output = stream.getvalue()
    assert "webhook attempt" in output
    assert hooks.secret not in output and rotated.json["secret"] not in output and "whsec_" not in output
    assert os.environ.get("MAILBRIDGE_SSRF_ALLOWED_NETWORKS")


def test_https_dials_the_vetted_address_and_verifies_the_certificate_for_the_url_host(hooks, monkeypatch,
                                                                                      tmp_path):
    """TLS must be verified against the URL's host while the socket goes to the vetted address (no re-resolve)."""
    cert, key = make_self_signed("hooks.example")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    secure = Receiver(hooks.clock).start()
    secure.server.socket = context.wrap_socket(secure.server.socket, server_side=True)
    vetted = []

    def fake_vet(host, port):  # "hooks.example" has no DNS: only the vetted address can be dialled
        vetted.append(host)
        return "127.0.0.1"

    monkeypatch.setattr(transport, "resolve_and_vet", fake_vet)
    url = f"https://hooks.example:{secure.port}/in"
    try:
        assert hooks.api("PUT", "/v1/webhook", key=hooks.tenant["key"], json_body={"url": url}).status == 200
        untrusted = hooks.api("POST", "/v1/webhook/test", key=hooks.tenant["key"])
        assert untrusted.json["delivered"] is False and untrusted.json["result"] == "TLS error"
        monkeypatch.setattr(transport, "CA_CERTS", str(tmp_path / "cert.pem"))
        trusted = hooks.api("POST", "/v1/webhook/test", key=hooks.tenant["key"])
        assert trusted.json["delivered"] is True, trusted.json
        [hit] = secure.hits
        assert hit.headers["Host"] == f"hooks.example:{secure.port}" and verify_webhook(hooks.secret, hit.headers,
                                                                                        hit.body)
        assert vetted == ["hooks.example"] * 3  # at PUT and before each attempt
    finally:
        secure.stop()


def test_an_internal_failure_is_a_recorded_attempt_not_a_stuck_claim(hooks, monkeypatch):
    """A crash while building the request (e.g. KMS) must be recorded and retried on schedule, not left claimed."""
    def broken(webhook):
        raise RuntimeError("kms unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(deliveries.webhook_config, "signing_secret", broken)
        event = hooks.emit()
    d = hooks.delivery(event)
    assert (d.status, d.attempts, d.last_error) == ("pending", 1, "internal error") and hooks.queue.delays == [60]
    hooks.queue.run_until(hooks.clock.now + 60)
    assert hooks.delivery(event).status == "delivered" and len(hooks.receiver.hits) == 1
