"""Guards against HTTP 500s and answers that break the OpenAPI document on the running local stack: the API
served over HTTP by `infra.local_stack` (moto server behind it, the worker and notifier loops running), with
seeded data — a tenant and keys, an IMAP mailbox on Dovecot whose messages were imported and paired (links)
or suggested (signals), an audit entry, a webhook delivery, an outbox item, a rule, a mail server — and
schemathesis fuzzing every operation of `/v1/openapi.json` with those real ids in its path parameters, so the
handlers behind a path are reached instead of stopping at a 404. Destructive operations (DELETE) run last.
`LOCAL_FUZZ_EXAMPLES` sets the examples per operation and caller (default 2, to stay near 90 s; the in-process fuzz in
tests/unit/test_openapi_fuzz.py covers more examples per operation)."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from devservers.dovecot import free_port
from devservers.smtp import for_dovecot
from tests.local_stack_helpers import start_stack, stop_stack, wait_for
from tests.mailfactory import make_message

EXAMPLES = int(os.environ.get("LOCAL_FUZZ_EXAMPLES", "2"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
USER = "u-alice"


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint on loopback that accepts every delivery."""
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 - http.server naming
        self.received.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass



def seed(base: str, key: str, operator_key: str, dovecot, smtp_port: int) -> dict[str, str]:
    """Real resources of every kind a path parameter names; returns {parameter name: id}."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {key}"})

    def call(method: str, path: str, expect: int, *, user: bool = False, **kwargs):
        headers = {"X-User-Id": USER} if user else {}
        answer = session.request(method, base + path, timeout=60, headers=headers, **kwargs)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)      # the webhook first: imports are delivered
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    call("PUT", "/v1/webhook", 200, json={"url": f"http://127.0.0.1:{receiver.server_address[1]}/hook"})
    call("POST", "/v1/webhook/test", 200)
    call("POST", "/v1/directory/batch", 200, json={"records": [
        {"type": "company", "id": "c-1", "name": "Acme", "emails": ["info@acme.example"],
         "domains": ["acme.example"]},
        {"type": "contact", "id": "p-1", "name": "Jan Novák", "emails": ["jan@acme.example"]}]})
    user, password = dovecot.new_user("fuzz")
    today = datetime.now(timezone.utc)
    for n in range(3):
        dovecot.append(user, "INBOX", make_message(subject=f"Fuzz seed {n}", date=today,
                                                   attachments=[("a.txt", "text/plain", b"attached")]),
                       date=today)
    endpoint = {"host": "127.0.0.1", "security": "none", "username": user, "login_method": "plain"}
    mailbox = call("POST", "/v1/mailboxes", 201, user=True, json={
        "name": "Fuzz", "type": "imap", "email": "alice@example.com", "import_since": today.date().isoformat(),
        "pairing_mode": "signal", "password": password,
        "imap": {**endpoint, "port": dovecot.port}, "smtp": {**endpoint, "port": smtp_port}})
    mailbox_id = mailbox["id"]
    call("POST", f"/v1/mailboxes/{mailbox_id}/refresh", 202)
    messages = wait_for(lambda: call(
        "GET", f"/v1/mailboxes/{mailbox_id}/messages", 200, user=True)["items"], "the imported messages", 60)
    message_id = messages[0]["id"]
    signals = wait_for(lambda: call("GET", "/v1/signals", 200)["items"], "signals", 60)
    call("POST", f"/v1/signals/{signals[0]['id']}/accept", 200)           # a link and its audit entry
    audit = call("GET", "/v1/audit", 200)["items"]

    deliveries = wait_for(lambda: call("GET", "/v1/webhook/deliveries", 200)["items"], "a webhook delivery", 60)

    outbox = call("POST", f"/v1/mailboxes/{mailbox_id}/send", 202, user=True,
                  json={"to": ["jan@acme.example"], "subject": "fuzz", "text": "hello"})
    second_key = call("POST", "/v1/keys", 201, json={"name": "fuzzed"})
    rule = call("POST", "/v1/rules", 201, json={"name": "fuzzed", "actions": [{"type": "stop"}]})
    other_tenant = requests.post(base + "/v1/admin/tenants", timeout=30, headers={
        "Authorization": f"Bearer {operator_key}"}, json={"name": "Fuzzed by the operator", "plan": "standard"})
    assert other_tenant.status_code == 201, other_tenant.text
    notifications = call("GET", f"/v1/users/{USER}/notifications", 200)["items"]
    return {"mailbox_id": mailbox_id, "message_id": message_id, "index": "0",
            "signal_id": signals[-1]["id"], "audit_id": audit[0]["id"], "delivery_id": deliveries[0]["id"],
            "outbox_id": outbox["id"], "key_id": second_key["id"], "rule_id": rule["id"],
            "record_type": "company", "record_id": "c-1", "entity_id": "c-1", "user_id": USER,
            "tenant_id": other_tenant.json()["id"],
            **({"notification_id": notifications[0]["id"]} if notifications else {})}


def fuzz(schema, headers_for, known_ids: dict[str, str]) -> tuple[list[str], int]:
    """Every operation, as each caller `headers_for(operation)` names (a list of header sets)."""
    fuzz_settings = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() == "DELETE")          # destructive ones last
    failures: list[str] = []
    for operation in operations:
        for headers in headers_for(operation):

            @fuzz_settings
            @given(case=operation.as_strategy())
            def check(case):
                for name in set(case.path_parameters or {}) & set(known_ids):
                    case.path_parameters[name] = known_ids[name]
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

            try:
                check()
            except (Exception, BaseExceptionGroup) as error:  # every operation's failure, not the first only
                failures.append(f"{operation.label} {sorted(headers)}: {error}")
    return failures, len(operations)


@pytest.fixture
def smtp_port(dovecot):
    with for_dovecot(dovecot) as server:
        yield server.port


@pytest.mark.slow
def test_the_running_local_stack_holds_its_contract_under_fuzzing_with_real_ids(tmp_path, dovecot, smtp_port):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process, demo_key = start_stack(tmp_path / "state", port, tmp_path / "stack.log")
    try:
        operator_key = json.loads((tmp_path / "state" / "local-secrets.json").read_text())["operator_key"]
        known = seed(base, demo_key, operator_key, dovecot, smtp_port)
        schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
        tenant = {"Authorization": f"Bearer {demo_key}"}
        user = {**tenant, "X-User-Id": USER}
        operator = {"Authorization": f"Bearer {operator_key}"}

        def callers(operation) -> list[dict[str, str]]:
            """The operator for its routes; the tenant for all others, and the owner user as well where a
            user reads (a mailbox, its messages and outbox, a user's notifications)."""
            if "operator" in (operation.tags or []):
                return [operator]
            if operation.method.upper() == "GET" and operation.path.startswith(
                    ("/v1/mailboxes", "/v1/messages", "/v1/outbox", "/v1/users")):
                return [tenant, user]
            return [tenant]
        failures, operations = fuzz(schema, callers, known)
        print(f"\nlocal-stack fuzz: {operations} operations x {EXAMPLES} examples, {len(failures)} failing")
        assert operations >= 70
        assert not failures, "\n\n".join(failures)
    finally:
        stop_stack(process)
