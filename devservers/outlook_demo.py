"""`python -m devservers.fake_microsoft` (`make demo-outlook`): the fake Microsoft for the local stack.

Starts `devservers.fake_microsoft.FakeMicrosoft` on 127.0.0.1:8443 with a CA written to `.local/fake-microsoft/`
(generated, never committed), one Microsoft app and one Outlook account holding three messages, prints the
environment for `make run` and shell lines that connect the mailbox through the API at `--api` (default
`$MAILBRIDGE_API_URL`, else http://127.0.0.1:8000, the port `make run` uses unless given `--port`), then reads
commands: `n` adds an inbox message and POSTs its change notification to mailbridge, `r` lists the Graph requests
served since the last `r` (an idle sync: one delta request per folder), `q` quits. `--sign-in URL` acts as the
browser for an authorize or admin-consent URL and delivers the answer to mailbridge's callback.

The fake keeps everything in memory (the app's secret is new at every start): after restarting it, register the
app and connect the mailbox again.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
import time
from pathlib import Path

import requests

from devservers.fake_microsoft import FakeMicrosoft, browser_sign_in
from devservers.tlsca import make_loopback_tls
from tests.mailfactory import make_message

DEMO_CLIENT_ID = "11111111-0000-4000-8000-00000000demo"
DEMO_ADDRESS = "demo@contoso.example"
# `... | field NAME` prints one field of a JSON answer, or exits with the API's problem detail (the README's helper)
FIELD_FUNCTION = ("field() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d.get(\"detail\", d)) "
                  "if not d.get(sys.argv[1]) else print(d[sys.argv[1]])' \"$1\"; }")


def _demo_seed(fake: FakeMicrosoft) -> None:
    fake.add_user(DEMO_ADDRESS)
    fake.mail.add_message(DEMO_ADDRESS, "inbox", make_message(
        subject="Poptávka #1234#", from_="Jan Novák <jan@acme.example>", to=DEMO_ADDRESS,
        body="Dobrý den,\nposílám poptávku.\n"))
    fake.mail.add_message(DEMO_ADDRESS, "inbox", make_message(
        subject="Price list", from_="Eva <eva@supplier.example>", to=DEMO_ADDRESS, body="Prices attached.\n"))
    fake.mail.add_message(DEMO_ADDRESS, "sentitems", make_message(
        subject="Re: Poptávka #1234#", from_=DEMO_ADDRESS, to="Jan Novák <jan@acme.example>", body="Thanks.\n"))


def connect_lines(api: str, server: dict, python: str = ".venv/bin/python") -> list[str]:
    """Shell lines that paste as they are once KEY holds the demo API key: register the app, create the mailbox,
    sign in (and, when the organisation requires it, the administrator's approval first), then watch."""
    auth = '-H "Authorization: Bearer $KEY"'
    json_type = "-H 'Content-Type: application/json'"
    mailbox = {"name": "Outlook", "type": "outlook", "email": DEMO_ADDRESS, "mail_server_id": "SERVER_ID"}
    mailbox_body = shlex.quote(json.dumps(mailbox)).replace("SERVER_ID", "'\"$S\"'")
    return [
        f"B={shlex.quote(api)}",
        FIELD_FUNCTION,
        f"S=$(curl -s -X POST $B/v1/mail-servers {auth} {json_type} -d {shlex.quote(json.dumps(server))} | field id)",
        f"R=$(curl -s -X POST $B/v1/mailboxes {auth} -H 'X-User-Id: u-demo' {json_type} -d {mailbox_body})",
        "M=$(echo \"$R\" | field id); U=$(echo \"$R\" | field authorize_url); echo $M",
        f"{python} -m devservers.fake_microsoft --sign-in \"$U\"      # → outcome connected (or needs_admin_consent)",
        "# needs_admin_consent: an administrator approves, then the owner signs in with a fresh link",
        f"A=$(curl -s -X POST $B/v1/mailboxes/$M/authorize {auth} {json_type} -d '{{}}' | field admin_consent_url)",
        f"{python} -m devservers.fake_microsoft --sign-in \"$A\"      # → outcome admin_consented",
        f"U=$(curl -s -X POST $B/v1/mailboxes/$M/authorize {auth} {json_type} -d '{{}}' | field authorize_url)",
        f"{python} -m devservers.fake_microsoft --sign-in \"$U\"      # → outcome connected",
        f"curl -s $B/v1/mailboxes/$M/sync {auth}                  # status, counts, push_expires_at",
        f"curl -s $B/v1/mailboxes/$M/messages {auth} -H 'X-User-Id: u-demo'",
    ]


def _sign_in(url: str, ca: str) -> int:
    """Act as the browser: follow an authorize/admin-consent URL and deliver its answer to mailbridge."""
    method, target, params = browser_sign_in(url, ca)
    if method == "POST":
        response = requests.post(target, data=params, allow_redirects=False, timeout=30)
    else:
        response = requests.get(target, params=params, allow_redirects=False, timeout=30)
    print(f"{method} {target} → {response.status_code} {response.headers.get('Location') or response.text[:300]}")
    return 0 if response.status_code < 400 else 1


def _report(fake: FakeMicrosoft, seen: int) -> int:
    """Print the Graph requests served since `seen`; returns the new mark."""
    served = fake.graph_requests[seen:]
    print(f"{len(served)} Graph request(s) since the last report:", flush=True)
    for method, path, _ in served:
        print(f"  {method} {path}", flush=True)
    return seen + len(served)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservers.fake_microsoft",
                                     description="A fake Microsoft identity platform + Graph for the local stack.")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--dir", default=".local/fake-microsoft", help="where the generated CA is written")
    parser.add_argument("--api", default=os.environ.get("MAILBRIDGE_API_URL", "http://127.0.0.1:8000"),
                        help="the API the printed commands call (default $MAILBRIDGE_API_URL or "
                             "http://127.0.0.1:8000)")
    parser.add_argument("--admin-consent-required", action="store_true",
                        help="the demo organisation lets only an administrator consent (AADSTS65001)")
    parser.add_argument("--sign-in", metavar="URL", help="act as the browser for an authorize/admin-consent URL")
    args = parser.parse_args(argv)
    ca = str(Path(args.dir).resolve() / "ca.pem")
    if args.sign_in:
        return _sign_in(args.sign_in, ca)
    fake = FakeMicrosoft(tls=make_loopback_tls(Path(args.dir)), port=args.port).start()
    secret = secrets.token_urlsafe(24)
    fake.identity.register_app(DEMO_CLIENT_ID, secret)
    _demo_seed(fake)
    if args.admin_consent_required:
        fake.identity.admin_approval_required.add(fake.mail.user(DEMO_ADDRESS).tenant_id)
    server = {"name": "Contoso (fake Microsoft)", "type": "outlook",
              "oauth": {"client_id": DEMO_CLIENT_ID, "client_secret": secret, "ms_tenant": "organizations"}}
    python = os.path.relpath(sys.executable) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable
    print(f"fake Microsoft is up at {fake.base_url} (identity platform + Graph {fake.graph_root})"
          + (" — only an administrator may consent" if args.admin_consent_required else ""))
    print("1. start the local stack pointed at it (another terminal; stop a running `make run` first, its data stays):")
    print(f"   REQUESTS_CA_BUNDLE={ca} MAILBRIDGE_MICROSOFT_AUTHORITY_HOST={fake.base_url} "
          f"MAILBRIDGE_GRAPH_API_ROOT={fake.graph_root} make run")
    print(f"2. connect {DEMO_ADDRESS} through the API at {args.api} (first: export KEY=<the demo API key from "
          "make run's banner>):")
    for line in connect_lines(args.api.rstrip("/"), server, python):
        print(f"   {line}")
    print("Commands: 'n' + Enter = a new inbox message and its change notification; 'r' = the Graph requests "
          "since the last 'r'; 'q' = quit.", flush=True)
    seen = 0
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "q":
                break
            if command == "r":
                seen = _report(fake, seen)
            elif command == "n":
                message_id = fake.mail.add_message(DEMO_ADDRESS, "inbox", make_message(
                    subject=f"New mail {time.strftime('%H:%M:%S')}", from_="Jan <jan@acme.example>",
                    to=DEMO_ADDRESS, body="Hello again.\n"))
                answers = fake.notify(DEMO_ADDRESS, "inbox", message_id)
                print(f"added {message_id[:16]}…; notifications answered {[a[0] for a in answers] or 'none'}",
                      flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
