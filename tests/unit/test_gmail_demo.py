"""Guards `make demo-gmail` (the README's Gmail walk): printed lines that do not paste into a shell as they
are (quoting of the JSON bodies, the server id reaching the mailbox body, the authorize URL captured for
curl), and a `calls` summary that would hide how many Google requests an idle sync made."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

from chalicelib.sync.mime import parse_message
from devservers.fake_google import FakeGoogle
from devservers.gmail_demo import calls_since, connect_lines, seed_demo_account

# curl as the API would answer: the mail server gets an id, the mailbox echoes its body with an id and a link
STUB = r"""
curl() {
  local body="" url=""
  while [ $# -gt 0 ]; do
    case "$1" in -d) body="$2"; shift 2;; -H|-X) shift 2;; -s|-sL) shift;; *) url="$1"; shift;; esac
  done
  case "$url" in
    */v1/mail-servers) echo '{"id": "srv_1", "redirect_uri": "x"}';;
    */v1/mailboxes) python3 -c 'import json,sys; link = "http://127.0.0.1:9100/o/oauth2/v2/auth?x=1&y=2"
print(json.dumps({"id": "mbx_1", "authorize_url": link, "sent": json.loads(sys.argv[1])}))' "$body";;
    *) echo "GET $url";;
  esac
}
"""


def test_the_printed_lines_paste_into_bash_as_they_are():
    fake = FakeGoogle().start()
    try:
        lines = connect_lines(fake, "http://127.0.0.1:8010", "demo@gmail.example",
                              "http://127.0.0.1:8010/v1/push/gmail")
    finally:
        fake.stop()
    script = STUB + "KEY=mbk_test\n" + "\n".join(lines) + '\necho "S=$S"; echo "M=$M"; echo "MB=$MB"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert "S=srv_1" in out and "M=mbx_1" in out
    assert "GET http://127.0.0.1:9100/o/oauth2/v2/auth?x=1&y=2" in out        # curl -sL "$URL"
    sent = json.loads(out.split("MB=", 1)[1])["sent"]
    assert sent == {"name": "Gmail", "type": "gmail", "email": "demo@gmail.example", "mail_server_id": "srv_1"}
    assert any('"audience": "http://127.0.0.1:8010/v1/push/gmail"' in line for line in lines)


def test_calls_lists_what_google_served_since_the_last_time_with_labels():
    fake = FakeGoogle().start()
    try:
        fake.calls.update({"token": 1, "history.list": 1})
        fake.requests.append(("history.list", {"labelId": "INBOX"}))
        mark, seen = Counter(fake.calls), len(fake.requests)
        assert calls_since(fake, mark, seen) == "none"
        fake.calls.update({"history.list": 2})
        fake.requests += [("history.list", {"labelId": "INBOX"}), ("history.list", {"labelId": "SENT"})]
        assert calls_since(fake, mark, seen) == "history.list ×2 (INBOX, SENT)"
    finally:
        fake.stop()


def test_the_demo_account_holds_clean_mail_like_the_other_demos():
    """The fake Gmail's demo mail had raw 8-bit headers (every message showed "header: 8-bit bytes in subject"
    in `parse_errors`) and its Sent reply went to the account itself, so it was internal mail that never paired."""
    fake = FakeGoogle().start()
    try:
        seed_demo_account(fake, "demo@gmail.example")
        account = fake.accounts["demo@gmail.example"]
        parsed = [(m.labels, parse_message(m.raw)) for m in account.messages.values()]
    finally:
        fake.stop()
    assert len(parsed) == 3 and [p.parse_errors for _, p in parsed] == [[], [], []]
    subjects = sorted(p.subject for _, p in parsed)
    assert subjects == ["Poptávka #1234#", "Price list", "Re: Poptávka #1234#"]
    sent = next(p for labels, p in parsed if "SENT" in labels)
    assert [a["email"] for a in sent.to] == ["jan@acme.example"]
