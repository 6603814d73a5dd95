"""`python -m devservers.fake_microsoft` (`make demo-outlook`): the fake Microsoft for the local stack.

Starts `devservers.fake_microsoft.FakeMicrosoft` on 127.0.0.1:8443 with a CA written to `.local/fake-microsoft/`
(generated, never committed), one Microsoft app and one Outlook account holding three messages, prints the
environment for `make run` and the calls that connect the mailbox, then reads commands: `n` adds an inbox
message and POSTs its change notification to mailbridge, `q` quits. `--sign-in URL` acts as the browser for an
authorize or admin-consent URL and delivers the answer to mailbridge's callback.
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

import requests

from devservers.fake_microsoft import FakeMicrosoft, browser_sign_in
from devservers.tlsca import make_loopback_tls
from tests.mailfactory import make_message

DEMO_CLIENT_ID = "11111111-0000-4000-8000-00000000demo"
DEMO_ADDRESS = "demo@contoso.example"


def _demo_seed(fake: FakeMicrosoft) -> None:
    fake.add_user(DEMO_ADDRESS)
    fake.mail.add_message(DEMO_ADDRESS, "inbox", make_message(
        subject="Poptávka #1234#", from_="Jan Novák <jan@acme.example>", to=DEMO_ADDRESS,
        body="Dobrý den,\nposílám poptávku.\n"))
    fake.mail.add_message(DEMO_ADDRESS, "inbox", make_message(
        subject="Price list", from_="Eva <eva@supplier.example>", to=DEMO_ADDRESS, body="Prices attached.\n"))
    fake.mail.add_message(DEMO_ADDRESS, "sentitems", make_message(
        subject="Re: Poptávka #1234#", from_=DEMO_ADDRESS, to="Jan Novák <jan@acme.example>", body="Thanks.\n"))


def _sign_in(url: str, ca: str) -> int:
    """Act as the browser: follow an authorize/admin-consent URL and deliver its answer to mailbridge."""
    method, target, params = browser_sign_in(url, ca)
    if method == "POST":
        response = requests.post(target, data=params, allow_redirects=False, timeout=30)
    else:
        response = requests.get(target, params=params, allow_redirects=False, timeout=30)
    print(f"{method} {target} → {response.status_code} {response.headers.get('Location') or response.text[:300]}")
    return 0 if response.status_code < 400 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservers.fake_microsoft",
                                     description="A fake Microsoft identity platform + Graph for the local stack.")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--dir", default=".local/fake-microsoft", help="where the generated CA is written")
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
    print(f"fake Microsoft is up at {fake.base_url} (identity platform + Graph {fake.graph_root})")
    print("1. start the local stack pointed at it (another terminal):")
    print(f"   REQUESTS_CA_BUNDLE={ca} MAILBRIDGE_MICROSOFT_AUTHORITY_HOST={fake.base_url} "
          f"MAILBRIDGE_GRAPH_API_ROOT={fake.graph_root} make run")
    print("2. register the Microsoft app as a mail server:")
    print("   curl -s -X POST http://127.0.0.1:8000/v1/mail-servers -H \"Authorization: Bearer $KEY\" "
          f"-H 'Content-Type: application/json' -d '{json.dumps(server)}'")
    print(f"3. create an outlook mailbox for {DEMO_ADDRESS} with that mail_server_id, then sign in with its "
          "authorize_url:")
    print(f"   {sys.executable} -m devservers.fake_microsoft --sign-in '<authorize_url>'")
    print("Commands: 'n' + Enter = a new inbox message and its change notification; 'q' = quit.", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "q":
                break
            if line.strip() == "n":
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
