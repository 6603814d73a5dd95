"""`python -m bench.oauth_ingest`: Gmail and Microsoft Graph ingest through the real worker, on their fakes.

For each `--kind` (gmail, outlook): starts the fake (`devservers/fake_google.py` on loopback; the fake
Microsoft over TLS with a generated CA), loads a deterministic corpus (`bench/imap_ingest/corpus.py`, the IMAP
bench's generator; ~20 % in Sent), connects a mailbox the way the product does (Google: a refresh token the
fake issued; Microsoft: an MSAL cache from a real auth-code flow), then runs the sync worker
(`worker.handle_batch`, the Lambda handler body) against in-process moto until the mailbox is imported.
Prints and records (bench/results/oauth_ingest.json): messages/s, and per message the provider HTTP requests
(API calls as the fake served them — a Gmail batch of ≤ 50 `messages.get` is one request; Graph fetches each
message's `$value` — plus token requests), DynamoDB, S3 and SQS calls; then the calls of one idle sync.
The fakes answer instantly and moto runs in-process, so messages/s is the worker's own CPU cost, not what
Google or Microsoft would allow (Gmail: 250 quota units/s per user; Graph: 4 concurrent requests per mailbox).
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.imap_ingest.__main__ import job_event, _LambdaContext  # noqa: E402
from bench.imap_ingest.corpus import load_corpus  # noqa: E402
from bench.imap_ingest.world import moto_world  # noqa: E402
from bench.record import record  # noqa: E402

MS_CLIENT_ID, MS_CLIENT_SECRET = "00000000-aaaa-bbbb-cccc-00000000bench", "bench-client-secret"
GMAIL_ADDRESS, OUTLOOK_ADDRESS = "alice@gmail.example", "alice@contoso.example"
REDIRECT_URI = "http://127.0.0.1:8000/v1/oauth/callback"


class GmailWorld:
    kind = "gmail"

    def __init__(self):
        from devservers.fake_google import FakeGoogle
        self.fake = FakeGoogle().start()
        os.environ.update(self.fake.environment())

    def load(self, corpus) -> None:
        for message in corpus:
            labels = ("SENT",) if message.folder == "Sent" else ("INBOX", "UNREAD")
            self.fake.deliver(GMAIL_ADDRESS, message.raw, labels=labels, received=message.date)

    def mailbox(self, tenant_id: str, since: dt.date):
        from chalicelib.ids import new_id
        from chalicelib.models.mailbox import Mailbox, MailServer
        from chalicelib.push import gmail_push_key
        from chalicelib.security.crypto import encrypt_secrets
        from chalicelib.timeutil import now_iso
        now, server_id, mailbox_id = now_iso(), new_id("srv"), new_id("mbx")
        MailServer(tenant_id, server_id, name="Google", type="gmail", oauth={"client_id": self.fake.client_id},
                   secret_ciphertext=encrypt_secrets(tenant_id, server_id, {"client_secret": self.fake.client_secret}),
                   created_at=now, updated_at=now).save()
        mailbox = Mailbox(tenant_id, mailbox_id, name="Gmail", type="gmail", email=GMAIL_ADDRESS,
                          import_since=since.isoformat(), status="active", mail_server_id=server_id, kind="shared",
                          created_at=now, updated_at=now, secret_version=1, push_key=gmail_push_key(GMAIL_ADDRESS),
                          secret_ciphertext=encrypt_secrets(tenant_id, mailbox_id, {
                              "refresh_token": self.fake.issue_refresh_token(GMAIL_ADDRESS)}))
        mailbox.save()
        return mailbox

    def requests(self) -> collections.Counter:
        """HTTP requests the fake served, by endpoint (batch parts are not requests of their own)."""
        counted = collections.Counter(self.fake.calls)
        inside_batches = sum(1 for name, _ in self.fake.requests if name == "messages.get")
        counted["messages.get"] -= min(counted["messages.get"], inside_batches if counted["batch"] else 0)
        return +counted

    def reset(self) -> None:
        self.fake.calls.clear()
        self.fake.requests.clear()

    def stop(self) -> None:
        self.fake.stop()


class OutlookWorld:
    kind = "outlook"

    def __init__(self):
        from devservers.fake_microsoft import FakeMicrosoft
        from devservers.tlsca import make_loopback_tls
        self.fake = FakeMicrosoft(tls=make_loopback_tls(Path(tempfile.mkdtemp(prefix="mb-bench-tls-")))).start()
        self.fake.identity.register_app(MS_CLIENT_ID, MS_CLIENT_SECRET)
        self.fake.add_user(OUTLOOK_ADDRESS)
        os.environ.update({"REQUESTS_CA_BUNDLE": self.fake.ca_path,
                           "MAILBRIDGE_MICROSOFT_AUTHORITY_HOST": self.fake.base_url,
                           "MAILBRIDGE_GRAPH_API_ROOT": self.fake.graph_root,
                           "MAILBRIDGE_PUBLIC_BASE_URL": "https://mailbridge.test"})

    def load(self, corpus) -> None:
        for message in corpus:
            folder = "sentitems" if message.folder == "Sent" else "inbox"
            self.fake.mail.add_message(OUTLOOK_ADDRESS, folder, message.raw, received=message.date)

    def mailbox(self, tenant_id: str, since: dt.date):
        import msal

        from chalicelib.credentials.store import CredentialStore
        from chalicelib.ids import new_id
        from chalicelib.models.mailbox import Mailbox, MailServer
        from chalicelib.providers.graph.tokens import SCOPES, msal_app
        from chalicelib.security.crypto import encrypt_secrets
        from chalicelib.timeutil import now_iso
        now, server_id, mailbox_id = now_iso(), new_id("srv"), new_id("mbx")
        MailServer(tenant_id, server_id, name="Contoso", type="outlook",
                   oauth={"client_id": MS_CLIENT_ID, "ms_tenant": "organizations"},
                   secret_ciphertext=encrypt_secrets(tenant_id, server_id, {"client_secret": MS_CLIENT_SECRET}),
                   created_at=now, updated_at=now).save()
        mailbox = Mailbox(tenant_id, mailbox_id, name="Outlook", type="outlook", email=OUTLOOK_ADDRESS,
                          import_since=since.isoformat(), status="active", mail_server_id=server_id, kind="shared",
                          created_at=now, updated_at=now)
        mailbox.save()
        cache = msal.SerializableTokenCache()
        app = msal_app(client_id=MS_CLIENT_ID, client_secret=MS_CLIENT_SECRET, authority_host=self.fake.base_url,
                       ms_tenant="organizations", cache=cache)
        flow = app.initiate_auth_code_flow(list(SCOPES), redirect_uri=REDIRECT_URI, login_hint=OUTLOOK_ADDRESS,
                                           response_mode="form_post")
        _, _, params = self.fake.sign_in(flow["auth_uri"])
        assert "access_token" in app.acquire_token_by_auth_code_flow(flow, params)
        CredentialStore(tenant_id, mailbox_id).save({"msal_cache": cache.serialize()}, 0)
        return Mailbox.get(tenant_id, mailbox_id)

    def requests(self) -> collections.Counter:
        counted = collections.Counter()
        for method, path, _ in self.fake.graph_requests:
            name = "$value" if path.endswith("/$value") else "delta" if "/delta" in path else path
            counted[f"graph {method} {name}"] += 1
        for grant in self.fake.identity.token_requests:
            counted[f"token {grant}"] += 1
        return counted

    def reset(self) -> None:
        self.fake.graph_requests.clear()
        self.fake.identity.token_requests.clear()

    def stop(self) -> None:
        self.fake.stop()


def run_jobs(mailbox, counter) -> int:
    """Worker invocations until the mailbox needs no continuation (the harness's queue reads not counted)."""
    import json

    import boto3

    from chalicelib.config import get_settings
    from chalicelib.sync import worker
    sqs, queue = boto3.client("sqs"), get_settings().sync_queue_url
    invocations = 0
    while True:
        invocations += 1
        result = worker.handle_batch(job_event(mailbox.tenant_id, mailbox.mailbox_id), _LambdaContext(900))
        if result["batchItemFailures"]:
            raise RuntimeError(f"worker failed: {result}")
        with counter.paused():
            pending = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            for message in pending:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        if not any(json.loads(m["Body"]).get("reason") in ("continue", "follow_up") for m in pending):
            return invocations


def bench_kind(kind: str, corpus, since: dt.date) -> dict:
    from chalicelib.config import reset_settings
    from chalicelib.models.mailbox import Mailbox
    from chalicelib.models.tenant import Tenant
    from chalicelib.timeutil import now_iso
    world = {"gmail": GmailWorld, "outlook": OutlookWorld}[kind]()
    try:
        reset_settings()
        world.load(corpus)
        with moto_world() as counter:
            now = now_iso()
            Tenant("tnt_bench", name="Bench", plan="standard", created_at=now, updated_at=now).save()
            mailbox = world.mailbox("tnt_bench", since)
            world.reset()
            counter.reset()
            started = time.perf_counter()
            invocations = run_jobs(mailbox, counter)
            seconds = time.perf_counter() - started
            with counter.paused():
                imported = int(Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id,
                                           consistent_read=True).imported_count or 0)
            per = max(imported, 1)
            provider = world.requests()
            full = {
                "imported": imported, "seconds": round(seconds, 2), "worker_invocations": invocations,
                "messages_per_second": round(imported / seconds, 1),
                "provider_requests_per_message": round(sum(provider.values()) / per, 3),
                "provider_requests": dict(provider),
                "dynamodb_calls_per_message": round(counter.service_calls("dynamodb") / per, 3),
                "dynamodb_write_items_per_message": round(counter.dynamodb_writes() / per, 2),
                "s3_calls_per_message": round(counter.service_calls("s3") / per, 3),
                "sqs_calls_per_message": round(counter.service_calls("sqs") / per, 3),
                "kms_calls_full_import": counter.service_calls("kms"),
            }
            world.reset()
            counter.reset()
            with counter.paused():
                fresh = Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id, consistent_read=True)
            run_jobs(fresh, counter)
            full.update({"idle_provider_requests": dict(world.requests()),
                         "idle_aws_calls": {f"{s}.{o}": n for (s, o), n in counter.calls.most_common(10)}})
        return full
    finally:
        world.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.oauth_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", choices=("gmail", "outlook"), default=["gmail", "outlook"])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "oauth_ingest.json"))
    args = parser.parse_args(argv)
    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    corpus = load_corpus(args.messages, args.seed, now)
    since = (now - dt.timedelta(days=7)).date()
    results = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()}, {os.cpu_count()} cpu, Python {platform.python_version()}",
               "messages": len(corpus), "megabytes": round(sum(len(m.raw) for m in corpus) / 1e6, 1)}
    for kind in args.kind:
        print(f"{kind}: importing {len(corpus)} messages …", flush=True)
        results[kind] = bench_kind(kind, corpus, since)
        for key, value in results[kind].items():
            print(f"  {key:<34} {value}")
    results["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    record("oauth_ingest", results, args.out)
    return results


if __name__ == "__main__":
    main()
