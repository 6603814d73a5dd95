"""`python -m devservers` (`make demo-mail`): a demo IMAP (Dovecot) + SMTP account for the local stack.

Starts both servers on loopback, creates one account with a few messages dated today (one in Sent, one
with an attachment, one tagged `#1234#`), prints the curl lines that connect it with `POST /v1/mailboxes` and
watch it sync, for the API at `--api` (default `$MAILBRIDGE_API_URL`, else http://127.0.0.1:8000, the port
`make run` uses unless given `--port`), and keeps running until Ctrl-C. Every message the SMTP server
receives is shown as it arrives (envelope, Subject and the threading headers In-Reply-To/References, RFC 5322
§3.6.4), so a reply sent from the CRM can be checked at the server. On exit it compares the account with
the snapshot taken after seeding, says whether mailbridge left it byte-for-byte and flag-for-flag
unchanged, and lists what was added (a sent message's copy in Sent).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import urllib.request
from datetime import datetime, timezone
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devservers.dovecot import DovecotServer  # noqa: E402
from devservers.smtp import for_dovecot  # noqa: E402
from tests.mailfactory import make_message  # noqa: E402


def _seed(server: DovecotServer, user: str) -> None:
    now = datetime.now(timezone.utc)
    server.append(user, "INBOX", make_message(subject="Poptávka #1234#", from_="Jan Novák <jan@acme.example>",
                                              to=f"{user}@example.com", body="Dobrý den,\nposílám poptávku.\n"),
                  date=now)
    server.append(user, "INBOX", make_message(subject="Price list", from_="Eva <eva@supplier.example>",
                                              to=f"{user}@example.com",
                                              attachments=[("prices.csv", "text/csv", b"item,price\nA,10\n")]),
                  date=now)
    server.append(user, "Sent", make_message(subject="Re: Poptávka #1234#", from_=f"{user}@example.com",
                                             to="Jan Novák <jan@acme.example>", body="Thank you, offer attached.\n"),
                  flags=["\\Seen"], date=now)


def _headers(raw: bytes):
    return BytesHeaderParser(policy=policy.default).parsebytes(raw)


def received_lines(envelope: tuple[str, list[str], bytes]) -> list[str]:
    """What the demo prints for one message the SMTP server accepted."""
    mail_from, rcpt_tos, raw = envelope
    headers = _headers(raw)
    lines = [f"SMTP received: {headers.get('Subject', '')!s}  (MAIL FROM {mail_from} -> RCPT TO {', '.join(rcpt_tos)})"]
    for name in ("Message-ID", "In-Reply-To", "References"):
        if headers.get(name):
            lines.append(f"    {name}: {headers[name]!s}")
    return lines


def added_lines(before: dict, after: dict) -> list[str]:
    """One line per message in `after` that was not in `before` (folder → {uid: (flags, raw)})."""
    lines = []
    for folder, messages in after.items():
        for uid in sorted(set(messages) - set(before.get(folder, {}))):
            lines.append(f"  added to {folder}: {_headers(messages[uid][1]).get('Subject', '')!s} (uid {uid})")
    return lines


def _api_answers(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/v1/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# prints the new mailbox's id, or exits with the API's problem detail (on stderr) when it was refused
_PRINT_ID = ("python3 -c 'import json,sys; d=json.load(sys.stdin); "
             "print(d[\"id\"]) if \"id\" in d else sys.exit(d.get(\"detail\", d))'")


def connect_lines(api: str, body: dict) -> list[str]:
    """Shell lines that paste as they are once KEY holds the demo API key: connect, then watch."""
    auth = '-H "Authorization: Bearer $KEY"'
    return [
        f"B={shlex.quote(api)}",
        f"M=$(curl -s -X POST $B/v1/mailboxes {auth} -H 'X-User-Id: u-demo' -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body, ensure_ascii=False))} | {_PRINT_ID})",
        "echo $M",
        f"curl -s $B/v1/mailboxes/$M/sync {auth}                  # stage, counts, last success",
        f"curl -s $B/v1/mailboxes/$M/messages {auth} -H 'X-User-Id: u-demo'",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservers", description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=os.environ.get("MAILBRIDGE_API_URL", "http://127.0.0.1:8000"),
                        help="the API the printed commands call (default $MAILBRIDGE_API_URL or "
                             "http://127.0.0.1:8000)")
    args = parser.parse_args(argv)
    api = args.api.rstrip("/")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with DovecotServer() as server, for_dovecot(server) as smtp:
        user, password = server.new_user("demo")
        _seed(server, user)
        before = server.snapshot(user)
        endpoint = {"host": "127.0.0.1", "security": "none", "username": user, "login_method": "plain"}
        body = {"name": "Demo", "type": "imap", "email": f"{user}@example.com", "kind": "personal",
                "import_since": datetime.now(timezone.utc).date().isoformat(), "pairing_mode": "auto",
                "imap": {**endpoint, "port": server.port}, "smtp": {**endpoint, "port": smtp.port},
                "password": password}
        print("demo mail account is up (IMAP: Dovecot, SMTP: aiosmtpd, both on 127.0.0.1)", flush=True)
        print(f"  IMAP 127.0.0.1:{server.port}  SMTP 127.0.0.1:{smtp.port}  user {user}  password {password}")
        if not _api_answers(api):
            print(f"  note: no mailbridge API answers at {api} yet; start `make run` (or pass --api URL)")
        print(f"  connect it to the API at {api} (first: export KEY=<the demo API key from make run's banner>):")
        for line in connect_lines(api, body):
            print(f"    {line}")
        print(f"  or watch it in the console: {api}/console (sign in with the same key)")
        print("Stop with Ctrl-C; the account is then compared with its state before mailbridge saw it.", flush=True)
        shown = 0
        try:
            while not stop.wait(0.5):  # a short wait keeps the main thread responsive to Ctrl-C
                for envelope in smtp.envelopes[shown:]:
                    print("\n".join(received_lines(envelope)), flush=True)
                    shown += 1
        except KeyboardInterrupt:
            pass
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the comparison short
        after = server.snapshot(user)
        unchanged = after == before
        print(f"server mailbox byte-for-byte and flag-for-flag unchanged: {'yes' if unchanged else 'NO'}")
        for line in added_lines(before, after):
            print(line)
        return 0 if unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
