"""Guards the README's Gmail walk as a newcomer does it, through the local stack's HTTP API (`make run` in a
subprocess, pointed at the fake Google by its MAILBRIDGE_* settings, the functions in their own process): the
consent link connecting the mailbox, its mail arriving, a Pub/Sub push bringing a new message in on the next
worker pass, and an idle sync costing more than one Gmail call per label."""
from __future__ import annotations


import pytest
import requests

from devservers.dovecot import free_port
from devservers.fake_google import FakeGoogle
from devservers.gmail_demo import DEMO_SERVICE_ACCOUNT, DEMO_TOPIC, demo_message
from tests.local_stack_helpers import clear_of_the_half_hour_tick, start_stack, stop_stack, wait_for

EMAIL = "walk@gmail.example"



@pytest.mark.slow
def test_connect_push_and_idle_sync_through_the_local_stack(tmp_path):
    with FakeGoogle() as google:
        google.deliver(EMAIL, demo_message(1, EMAIL, "First", "Jan <jan@acme.example>"))
        google.deliver(EMAIL, demo_message(2, EMAIL, "Second", "Eva <eva@supplier.example>"))
        google.deliver(EMAIL, demo_message(3, EMAIL, "Re: First", EMAIL), labels=("SENT",))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process, key = start_stack(tmp_path / "state", port, tmp_path / "run.log", env=google.environment())
        try:
            admin = {"Authorization": f"Bearer {key}"}
            headers = {**admin, "X-User-Id": "u-demo"}
            audience = f"{base}/v1/push/gmail"
            server = requests.post(f"{base}/v1/mail-servers", headers=admin, timeout=30, json={
                "name": "Google", "type": "gmail",
                "oauth": {"client_id": google.client_id, "client_secret": google.client_secret},
                "push": {"topic": DEMO_TOPIC, "audience": audience, "service_account": DEMO_SERVICE_ACCOUNT}})
            assert server.status_code == 201, server.text
            assert server.json()["redirect_uri"] == f"{base}/v1/oauth/callback"
            created = requests.post(f"{base}/v1/mailboxes", headers=headers, timeout=30, json={
                "name": "Gmail", "type": "gmail", "email": EMAIL, "mail_server_id": server.json()["id"]})
            assert created.status_code == 201 and created.json()["status"] == "pending_auth", created.text
            mailbox_id = created.json()["id"]

            page = requests.get(created.json()["authorize_url"], timeout=30)   # the fake's 302 → our callback
            assert page.status_code == 200 and "Mailbox connected" in page.text, page.text

            def subjects() -> list[str]:
                answer = requests.get(f"{base}/v1/mailboxes/{mailbox_id}/messages", headers=headers, timeout=10)
                return sorted(m["subject"] for m in answer.json()["items"])

            wait_for(lambda: len(subjects()) == 3, "the first import")
            google.deliver(EMAIL, demo_message(4, EMAIL, "Pushed", "Petr <petr@acme.example>"))
            assert google.publish(EMAIL, audience, audience=audience, service_account=DEMO_SERVICE_ACCOUNT) == 204
            assert wait_for(lambda: "Pushed" in subjects(), "the pushed message", 15)

            def settled() -> bool:
                status = requests.get(f"{base}/v1/mailboxes/{mailbox_id}/sync", headers=headers, timeout=10).json()
                return status["stage"] == "idle" and not status["lease_held"] and not status["follow_up_requested"]

            wait_for(settled, "the push's sync to finish")
            clear_of_the_half_hour_tick()
            google.calls.clear()
            seen = len(google.requests)
            refresh = requests.post(f"{base}/v1/mailboxes/{mailbox_id}/refresh", headers=admin, timeout=10)
            assert refresh.status_code == 202, refresh.text
            wait_for(lambda: google.calls["history.list"] >= 2, "the refresh's sync")
            wait_for(settled, "the refresh's sync to finish")
            assert dict(google.calls) == {"history.list": 2}      # one call per label; no token, no fetch
            assert sorted(params["labelId"] for _, params in google.requests[seen:]) == ["INBOX", "SENT"]
        finally:
            stop_stack(process)
