"""`python -m devservers.fake_google` (`make demo-gmail`): the fake Google for the local stack.

Starts `devservers.fake_google.FakeGoogle` on 127.0.0.1:9100 with one Gmail account holding three messages (two
in INBOX, one in SENT), prints the environment for `make run` and the curl lines that connect the mailbox to
the API at `--api` (default `$MAILBRIDGE_API_URL`, else http://127.0.0.1:8000) — the OAuth app, the mailbox,
the consent (curl plays the browser: the fake consents at once and redirects back to `/v1/oauth/callback`) —
then reads commands:
- `new`: deliver a message and send its Pub/Sub push (an RS256 token with the demo subscription's audience and
  service account) to `<api>/v1/push/gmail`, as Google does for a watched account;
- `calls`: the Google requests served since the last `calls` (e.g. after a refresh of an idle mailbox:
  `history.list ×2 (INBOX, SENT)`, one call per label);
- `q` or Ctrl-C: quit (without a terminal, at the end of input, it keeps serving until Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shlex
import threading
from collections import Counter

from devservers.fake_google import FakeGoogle
from tests.mailfactory import make_message

DEMO_TOPIC = "projects/demo-project/topics/gmail"
DEMO_SERVICE_ACCOUNT = "push@demo-project.iam.gserviceaccount.com"
# `... | field NAME` prints a field of a JSON answer, or exits with the API's problem detail (as the README's)
FIELD = ("python3 -c 'import json,sys; d=json.load(sys.stdin); "
         "print(d[sys.argv[1]]) if sys.argv[1] in d else sys.exit(d.get(\"detail\", d))'")


def demo_message(n: int, email: str, subject: str, sender: str, to: str | None = None) -> bytes:
    """Message `n` from `sender` to `to` (default: the account), non-ASCII headers RFC 2047 encoded."""
    return make_message(subject=subject, from_=sender, to=to or email, body=f"Demo message {n} in the fake Gmail.\n",
                        message_id=f"<demo-gmail-{n}-{secrets.token_hex(4)}@example.org>")


def seed_demo_account(fake: FakeGoogle, email: str) -> None:
    """The account's three messages, as `make demo-mail` and `make demo-outlook` seed theirs."""
    fake.deliver(email, demo_message(1, email, "Poptávka #1234#", "Jan Novák <jan@acme.example>"))
    fake.deliver(email, demo_message(2, email, "Price list", "Eva <eva@supplier.example>"))
    fake.deliver(email, demo_message(3, email, "Re: Poptávka #1234#", email, to="Jan Novák <jan@acme.example>"),
                 labels=("SENT",))


def connect_lines(fake: FakeGoogle, api: str, email: str, push_to: str) -> list[str]:
    """Shell lines that paste as they are once KEY holds the demo API key."""
    auth = '-H "Authorization: Bearer $KEY"'
    server = json.dumps({"name": "Google", "type": "gmail",
                         "oauth": {"client_id": fake.client_id, "client_secret": fake.client_secret},
                         "push": {"topic": DEMO_TOPIC, "audience": push_to, "service_account": DEMO_SERVICE_ACCOUNT}})
    mailbox = json.dumps({"name": "Gmail", "type": "gmail", "email": email, "mail_server_id": "SERVER"})
    mailbox = "'" + mailbox.replace("SERVER", "'$S'") + "'"        # $S outside the single quotes
    return [
        f"B={shlex.quote(api)}",
        f"S=$(curl -s -X POST $B/v1/mail-servers {auth} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(server)} | {FIELD} id)",
        f"MB=$(curl -s -X POST $B/v1/mailboxes {auth} -H 'X-User-Id: u-demo' -H 'Content-Type: application/json' "
        f"-d {mailbox})",
        f"M=$(echo \"$MB\" | {FIELD} id); URL=$(echo \"$MB\" | {FIELD} authorize_url); echo $M",
        "curl -sL \"$URL\"                # the browser's part: consent, back to /v1/oauth/callback → connected",
        f"curl -s $B/v1/mailboxes/$M/messages {auth} -H 'X-User-Id: u-demo'   # 3 messages after the first import",
        f"curl -s $B/v1/mailboxes/$M/sync {auth}                            # stage, counts, push_expires_at",
    ]


def calls_since(fake: FakeGoogle, mark: Counter, seen: int) -> str:
    """The requests counted since `mark`/`seen`, with the labels of list calls (batch parts count per part)."""
    with fake._lock:
        delta = fake.calls - mark
        recent = list(fake.requests[seen:])
    labels: dict[str, list[str]] = {}
    for name, params in recent:
        label = params.get("labelId") or params.get("labelIds")
        if label:
            labels.setdefault(name, []).append(label if isinstance(label, str) else ",".join(label))
    parts = [f"{name} ×{count}" + (f" ({', '.join(labels[name])})" if name in labels else "")
             for name, count in sorted(delta.items())]
    return ", ".join(parts) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservers.fake_google",
                                     description="A fake Google (OAuth, Gmail API, push) for the local stack.")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--email", default="demo@gmail.example")
    parser.add_argument("--api", default=os.environ.get("MAILBRIDGE_API_URL", "http://127.0.0.1:8000"),
                        help="the API the printed commands and the pushes call (default $MAILBRIDGE_API_URL or "
                             "http://127.0.0.1:8000)")
    parser.add_argument("--push-to", default=None,
                        help="the push endpoint, also the token audience (default <api>/v1/push/gmail)")
    args = parser.parse_args(argv)
    api = args.api.rstrip("/")
    push_to = args.push_to or f"{api}/v1/push/gmail"
    fake = FakeGoogle(args.port).start()
    email = args.email.lower()
    fake.add_account(email)
    seed_demo_account(fake, email)
    env = " ".join(f"{name}={value}" for name, value in fake.environment().items())
    print(f"fake Google on {fake.root} with account {email} (3 messages)\n\n"
          f"1. start the stack pointed at it (another terminal; stop a running `make run` first, its data stays; "
          f"for another API port, "
          f"`.venv/bin/python -m infra.local_stack --port N` in place of `make run`):\n"
          f"   {env} make run\n"
          f"2. with KEY=<the demo API key from its banner> exported, for the API at {api}:", flush=True)
    for line in connect_lines(fake, api, email, push_to):
        print(f"   {line}")
    print(f"3. type here: 'new' delivers a message and pushes it to {push_to} (it is in the messages after the "
          f"next worker pass);\n   'calls' lists the Google requests since the last 'calls' (an idle mailbox's "
          f"refresh: history.list ×2, one per label); 'q' quits.", flush=True)
    counter = itertools.count(4)
    mark, seen = Counter(fake.calls), len(fake.requests)
    try:
        try:
            for line in iter(input, None):
                command = line.strip()
                if command == "new":
                    n = next(counter)
                    fake.deliver(email, demo_message(n, email, f"New message {n}", "Petr <petr@acme.example>"))
                    status = fake.publish(email, push_to, audience=push_to, service_account=DEMO_SERVICE_ACCOUNT)
                    print(f"delivered message {n}; " + (f"push answered {status}" if status else
                          "no push: the mailbox is not connected yet (no watch) or the API does not answer"),
                          flush=True)
                elif command == "calls":
                    print(f"Google requests since the last 'calls': {calls_since(fake, mark, seen)}", flush=True)
                    mark, seen = Counter(fake.calls), len(fake.requests)
                elif command == "q":
                    break
                elif command:
                    print("commands: new, calls, q", flush=True)
        except EOFError:           # no terminal: keep serving until Ctrl-C
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0
