"""The README's first hour: lines that paste as they are, answers that say what happened and what to check."""
from __future__ import annotations

import re
from pathlib import Path

from chalicelib.api.schemas.mailboxes import CreateMailbox
from chalicelib.security.ssrf import GENERIC_MESSAGE
from devservers.__main__ import connect_lines

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
