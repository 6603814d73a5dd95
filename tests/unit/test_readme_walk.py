"""The README's first hour: lines that paste as they are, answers that say what happened and what to check."""
from __future__ import annotations

import io
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from chalicelib.api.schemas.mailboxes import CreateMailbox
from chalicelib.notify import signing
from chalicelib.security.ssrf import GENERIC_MESSAGE
from chalicelib.api.schemas.mail_servers import CreateMailServer
from devservers.__main__ import added_lines, connect_lines, received_lines
from devservers.outlook_demo import connect_lines as outlook_lines
from devservers.webhook_receiver import WebhookReceiver, verify_webhook
from tests.mailfactory import make_message
from tests.webhook_helpers import documented_verify

ROOT = Path(__file__).resolve().parents[2]
_QUOTED = re.compile(r"'[^']*'|\"(?:[^\"\\\\]|\\\\.)*\"")


def test_directory_batch_says_late_pairing_was_queued(api, tenant):
    """A newcomer loading records saw no sign that already imported mail would pair in the background."""
    records = {"records": [{"type": "contact", "id": "p-1", "name": "Jan", "emails": ["jan@acme.example"]}]}
    first = api("POST", "/v1/directory/batch", key=tenant["key"], json_body=records)
    assert first.status == 200 and first.json["pairing_queued"] is True
    again = api("POST", "/v1/directory/batch", key=tenant["key"], json_body=records)
    assert again.status == 200 and again.json["pairing_queued"] is False   # nothing new to match


def test_the_one_unreachable_host_message_says_what_to_check():
    """'could not be reached' alone left users guessing between a typo, the port and TLS vs STARTTLS."""
    for hint in ("spelling", "port", "security mode", "tls", "starttls"):
        assert hint in GENERIC_MESSAGE


def test_demo_mail_prints_lines_for_the_api_it_was_given():
    """`make demo-mail` printed http://127.0.0.1:8000 even when the stack ran on another port."""
    body = {"name": "Demo", "type": "imap", "email": "demo@example.com", "import_since": "2026-12-01",
            "imap": {"host": "127.0.0.1", "port": 1143, "security": "none", "username": "demo"},
            "smtp": {"host": "127.0.0.1", "port": 1587, "security": "none", "username": "demo"},
            "password": "it's-a-secret", "kind": "personal"}
    lines = connect_lines("http://127.0.0.1:8001", body)
    assert lines[0] == "B=http://127.0.0.1:8001" and all("8000" not in line for line in lines)
    assert any(line.startswith("M=$(curl -s -X POST $B/v1/mailboxes") for line in lines)
    assert "'\"'\"'" in lines[1]          # the apostrophe in the password survives the shell quoting
    CreateMailbox.model_validate(body)


# a stand-in for curl in the shell: logs "URL<TAB>body" and answers as the API would
_CURL_STUB = r"""curl() { local url="" data=""; while [ $# -gt 0 ]; do case "$1" in -d) data="$2"; shift;;
  http*) url="$1";; esac; shift; done; printf '%s\t%s\n' "$url" "$data" >> "$LOG"
  case "$url" in */v1/mail-servers) echo '{"id": "srv_1"}';;
  */v1/mailboxes) echo '{"id": "mbx_1", "status": "pending_auth", "authorize_url": "https://ms.example/a?x=1&y=2"}';;
  esac; }
"""


def test_demo_outlook_lines_paste_into_a_shell_for_the_api_it_was_given(tmp_path):
    """`make demo-outlook` printed a curl for http://127.0.0.1:8000 only and left the mailbox call to be written
    by hand; its lines must run as printed, for the API it was given."""
    server = {"name": "Contoso", "type": "outlook",
              "oauth": {"client_id": "c-1", "client_secret": "it's-a-secret", "ms_tenant": "organizations"}}
    lines = outlook_lines("http://127.0.0.1:8020", server)
    log = tmp_path / "calls"
    script = _CURL_STUB + "\n".join(lines[:5]) + '\necho "M=$M U=$U"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "LOG": str(log), "KEY": "mbk_x"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "M=mbx_1 U=https://ms.example/a?x=1&y=2"
    calls = [line.split("\t", 1) for line in log.read_text().splitlines()]
    assert [url for url, _ in calls] == ["http://127.0.0.1:8020/v1/mail-servers", "http://127.0.0.1:8020/v1/mailboxes"]
    assert json.loads(calls[0][1]) == server
    CreateMailServer.model_validate(server)
    mailbox = json.loads(calls[1][1])
    assert mailbox["mail_server_id"] == "srv_1" and mailbox["type"] == "outlook"
    CreateMailbox.model_validate(mailbox)
    assert all("8000" not in line for line in lines)


def test_readme_shell_lines_have_no_unquoted_placeholders():
    """`curl $B/v1/keys/<id>` does not paste: the shell reads `<id>` as a redirection from a file named id."""
    readme = (ROOT / "README.md").read_text()
    offenders = []
    for block in re.findall(r"```\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            code = line.split(" #", 1)[0]
            if "curl" in code and re.search(r"<[^>\s]*>?", _QUOTED.sub("", code)):
                offenders.append(line)
    assert offenders == []


def test_demo_mail_shows_what_smtp_received_with_its_threading_headers():
    """The walk could not show that a reply from the CRM is threaded at the server: the demo printed nothing."""
    raw = make_message(subject="Re: Offer", message_id="<r-1@example.com>", in_reply_to="<offer-1@acme.example>",
                       references=["<offer-1@acme.example>"])
    lines = received_lines(("demo@example.com", ["jan@acme.example"], raw))
    assert lines[0].startswith("SMTP received: Re: Offer") and "RCPT TO jan@acme.example" in lines[0]
    assert "    In-Reply-To: <offer-1@acme.example>" in lines and "    References: <offer-1@acme.example>" in lines
    before = {"INBOX": {1: ((), raw)}, "Sent": {}}
    after = {"INBOX": {1: ((), raw)}, "Sent": {7: (("\\Seen",), raw)}}
    assert added_lines(before, after) == ["  added to Sent: Re: Offer (uid 7)"]


def _post(port: int, headers: dict, body: bytes) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hooks", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_demo_webhook_receiver_verifies_like_the_documented_recipe():
    """The walk's receiver must accept exactly what the docs' recipe accepts, and note a repeated event id."""
    secret, body = "whsec_demo", b'{"id":"evt_1","type":"outbox.sent","created_at":"2026-12-01T00:00:00Z","data":{}}'
    documented = documented_verify()
    now = int(time.time())
    cases = [(secret, now, body), (secret, now - 301, body), ("whsec_other", now, body), (secret, now, body + b" ")]
    for signer, stamp, sent in cases:
        headers = signing.signed_headers(signer, "evt_1", stamp, body)
        assert verify_webhook(secret, headers, sent) == documented(secret, headers, sent)
    out = io.StringIO()
    receiver = WebhookReceiver(secret, out=out).start()
    try:
        good = signing.signed_headers(secret, "evt_1", now, body)
        assert _post(receiver.port, good, body) == 204
        assert _post(receiver.port, signing.signed_headers("whsec_other", "evt_1", now, body), body) == 401
        assert _post(receiver.port, good, body) == 204
    finally:
        receiver.stop()
    assert receiver.seen == ["evt_1"] and "already had it" in out.getvalue() and "INVALID" in out.getvalue()


def test_readme_names_every_debian_package_bootstrap_installs():
    """The README listed three of the six Debian packages `make run`/`make test` install as root."""
    installed = re.findall(r"need_apt\+=\(([\w.+-]+)\)", (ROOT / "scripts" / "bootstrap.sh").read_text())
    two_commands = (ROOT / "README.md").read_text().split("## The two commands", 1)[1].split("```", 1)[0]
    assert len(installed) >= 6 and [p for p in installed if f"`{p}`" not in two_commands] == []
