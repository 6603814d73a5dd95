"""Guards against the console failing a newcomer's first session in a real browser: signing in, watching the
mailbox sync mail from a real Dovecot, accepting a signal, replaying a webhook delivery — and against a
hostile subject (`<img src=x onerror=alert(1)>`) running as HTML instead of showing as text.

The API runs in-process over HTTP on loopback (Chalice's local server, as `make run` serves it) against moto,
with the SQS queues fed to the very `worker`/`notifier` handlers Lambda runs (`infra/local_events.SqsPoller`).
The browser is Debian's `chromium` driven through `chromium-driver` by selenium; nothing is downloaded.
Screenshots land in `test-artifacts/console/` (git-ignored).
"""
from __future__ import annotations

import shutil
import struct
import tempfile
import threading
import zlib
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
import requests
from chalice.config import Config
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from devservers.dovecot import free_port
from devservers.smtp import for_dovecot
from infra.local_api import create_server
from infra.local_events import SqsPoller
from selenium.common.exceptions import (NoAlertPresentException, NoSuchElementException,
                                        StaleElementReferenceException)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from tests.conftest import OPERATOR_KEY
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox as make_store_mailbox
from tests.webhook_helpers import Receiver, SimClock

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
XSS_SUBJECT = "<img src=x onerror=alert(1)>"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def served(aws):
    """The app on http://127.0.0.1:<port> plus the worker and notifier polling their queues."""
    import app as app_module
    port = free_port()
    server = create_server(app_module.app, Config(chalice_stage="test"), "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    sqs = boto3.client("sqs")
    for url, handler, name in ((aws["sync_queue_url"], app_module.worker, "worker"),
                               (aws["events_queue_url"], app_module.notifier, "notifier")):
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        poller = SqsPoller(sqs, url, arn, handler, name, 60, wait_seconds=1, log=lambda _m: None)
        threading.Thread(target=poller.run, args=(stop,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        server.shutdown()


@pytest.fixture
def browser():
    assert CHROMIUM and CHROMEDRIVER, "install Debian's chromium and chromium-driver (scripts/bootstrap.sh)"
    profile = tempfile.mkdtemp(prefix="mailbridge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("failure*"):
        stale.unlink()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _world(base: str, dovecot, smtp_port: int, receiver: Receiver) -> dict:
    """A tenant with a contact in its directory, a webhook, and a Dovecot mailbox in `signal` pairing mode
    holding a message from that contact and one with a hostile subject."""
    tenant = requests.post(f"{base}/v1/admin/tenants", headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                           json={"name": "Console tenant", "plan": "standard"}, timeout=10).json()
    headers = {"Authorization": f"Bearer {tenant['api_key']}"}
    batch = requests.post(f"{base}/v1/directory/batch", headers=headers, timeout=10, json={"records": [
        {"type": "contact", "id": "p-1", "name": "Jan Novák", "emails": ["jan@acme.example"]}]})
    assert batch.status_code == 200, batch.text
    hook = requests.put(f"{base}/v1/webhook", headers=headers, timeout=10,
                        json={"url": receiver.url, "event_types": ["message.created"]})
    assert hook.status_code == 200, hook.text
    user, password = dovecot.new_user()
    now = datetime.now(timezone.utc)
    dovecot.append(user, "INBOX", make_message(subject="Offer for the new office"), date=now)
    dovecot.append(user, "INBOX", make_message(subject=XSS_SUBJECT, from_="Mallory <m@evil.example>",
                                               html="<p>hi<script>alert(2)</script></p>"), date=now)
    endpoint = {"host": "127.0.0.1", "security": "none", "username": user, "login_method": "plain"}
    mailbox = requests.post(f"{base}/v1/mailboxes", headers=headers, timeout=30, json={
        "name": "Demo inbox", "type": "imap", "kind": "shared", "email": "alice@example.com", "pairing_mode": "signal",
        "import_since": now.date().isoformat(), "password": password,
        "imap": {**endpoint, "port": dovecot.port}, "smtp": {**endpoint, "port": smtp_port}})
    assert mailbox.status_code == 201, mailbox.text
    return {"key": tenant["api_key"], "tenant_id": tenant["id"], "mailbox_id": mailbox.json()["id"]}


def test_console_walk_sign_in_sync_signal_replay_and_escaping(served, browser, dovecot):

    receiver = Receiver(SimClock()).start()
    try:
        with for_dovecot(dovecot) as smtp:
            world = _world(served, dovecot, smtp.port, receiver)
            # the mailbox and message pages re-render every few seconds: read them only inside waits
            wait = WebDriverWait(browser, 30, poll_frequency=0.2,
                                 ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

            def text_of(css: str) -> str:
                return browser.find_element(By.CSS_SELECTOR, css).text

            def no_alert() -> None:
                with pytest.raises(NoAlertPresentException):
                    browser.switch_to.alert  # noqa: B018 - the property raises when no alert is open

            # a wrong key is refused with the API's problem detail, and nothing else is shown
            browser.get(f"{served}/console")
            wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
            browser.find_element(By.ID, "key").send_keys("mbk_wrong_wrong")
            browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
            wait.until(lambda d: "401" in d.find_element(By.ID, "signin-error").text)

            browser.find_element(By.ID, "key").send_keys(world["key"])
            browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
            row = f'tr[data-mailbox-id="{world["mailbox_id"]}"]'
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
            assert world["key"] not in browser.current_url
            assert browser.execute_script("return sessionStorage.getItem('mailbridge.key')") == world["key"]
            wait.until(lambda d: text_of(f"{row} td.counts").startswith("2 /"))   # the page refreshes itself
            wait.until(lambda d: text_of(f"{row} td.status") == "active")
            browser.save_screenshot(str(ARTIFACTS / "1-mailboxes.png"))

            # the mailbox's messages: the hostile subject is text, no <img> was made of it, no alert ran
            browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
            wait.until(lambda d: {e.text for e in d.find_elements(By.CSS_SELECTOR, "td.subject")}
                       == {XSS_SUBJECT, "Offer for the new office"})
            assert not browser.find_elements(By.CSS_SELECTOR, "#view img")
            no_alert()
            browser.save_screenshot(str(ARTIFACTS / "2-messages.png"))
            browser.find_element(By.LINK_TEXT, XSS_SUBJECT).click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1.subject"))
            assert text_of("h1.subject") == XSS_SUBJECT
            assert browser.find_element(By.CSS_SELECTOR, "iframe.mail-html").get_attribute("sandbox") == ""
            no_alert()
            browser.save_screenshot(str(ARTIFACTS / "3-message.png"))

            # the contact's message was suggested (pairing mode "signal"); accepting pairs it
            browser.get(f"{served}/console#/signals")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-signal-id]"))
            browser.save_screenshot(str(ARTIFACTS / "4-signals.png"))
            browser.find_element(By.CSS_SELECTOR, "tr[data-signal-id] button[data-action=accept]").click()
            wait.until(lambda d: "Accepted" in d.find_element(By.ID, "status").text)
            wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "tr[data-signal-id]"))
            listed = requests.get(f"{served}/v1/mailboxes/{world['mailbox_id']}/messages",
                                  headers={"Authorization": f"Bearer {world['key']}"}, timeout=10).json()["items"]
            paired = {m["subject"]: [(link["type"], link["id"]) for link in m["links"]] for m in listed}
            assert ("contact", "p-1") in paired["Offer for the new office"]

            # the audit trail holds the acceptance, with undo; a rule is created from the page's JSON editor
            browser.get(f"{served}/console#/audit")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-audit-id] button[data-action=undo]"))
            browser.get(f"{served}/console#/rules")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "textarea"))
            browser.find_element(By.XPATH, "//button[text()='Create rule']").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-rule-id]"))
            assert not browser.find_elements(By.CSS_SELECTOR, ".problem")

            # webhook deliveries: replay one delivered event; the receiver gets it again with the same id
            browser.get(f"{served}/console#/webhook")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-delivery-id] button[data-action=replay]")
                       or d.refresh())
            hits_before = len(receiver.hits)
            first = browser.find_element(By.CSS_SELECTOR, "tr[data-delivery-id]")
            delivery_id = first.get_attribute("data-delivery-id")
            first.find_element(By.CSS_SELECTOR, "button[data-action=replay]").click()
            wait.until(lambda d: "Replay queued" in d.find_element(By.ID, "status").text)
            wait.until(lambda d: text_of(f'tr[data-delivery-id="{delivery_id}"] td.replays') == "1")
            wait.until(lambda _d: len(receiver.hits) > hits_before)
            browser.save_screenshot(str(ARTIFACTS / "5-webhook.png"))

            # the operator sees tenants and plans
            browser.find_element(By.ID, "signout").click()
            wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
            assert browser.execute_script("return sessionStorage.getItem('mailbridge.key')") is None
            browser.find_element(By.ID, "key").send_keys(OPERATOR_KEY)
            browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
            tenant_row = f'tr[data-tenant-id="{world["tenant_id"]}"]'
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, tenant_row))
            options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, f"{tenant_row} select option")]
            assert {"free", "standard", "enterprise"} <= set(options)
            browser.save_screenshot(str(ARTIFACTS / "6-operator.png"))

            no_alert()
            problems = [entry["message"] for entry in browser.get_log("browser")
                        if entry["level"] == "SEVERE" and "Content Security Policy" in entry["message"]]
            assert problems == []
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / "failure.png"))
        (ARTIFACTS / "failure-browser-log.txt").write_text(
            "\n".join(f"{e['level']} {e['message']}" for e in browser.get_log("browser"))
            + "\n\n" + browser.find_element(By.TAG_NAME, "body").text)
        raise
    finally:
        receiver.stop()


def submit_sign_in(browser, wait, served: str, key: str, user: str = "") -> None:
    """Open the console and submit its sign-in form with `key` (and `user`, when given)."""
    browser.get(f"{served}/console")
    wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
    browser.find_element(By.ID, "key").send_keys(key)
    if user:
        browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()


def test_console_pages_of_another_role_do_not_sign_the_user_out(served, browser):
    """A tenant session opening the operator's `#/tenants` (a bookmark, a shared link) called the admin API with
    the tenant key; its 401 read as "the key was refused" and signed the user out — and the operator opening
    `#/mailboxes` likewise. Acting as a CRM user, the nav offered rules, audit and webhook pages that only answer
    403 for a user; an id of `..` in the address (`#/messages/..`) made the console call `/v1/` instead; and the
    audit page offered Undo on entries the API can only refuse (409)."""
    tenant = requests.post(f"{served}/v1/admin/tenants", headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                           json={"name": "Roles tenant", "plan": "standard"}, timeout=10).json()
    wait = WebDriverWait(browser, 20, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

    def sign_in(key: str, user: str = "") -> None:
        submit_sign_in(browser, wait, served, key, user)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#view .page"))

    def visit(hash_: str, expected: str) -> None:
        browser.get(f"{served}/console{hash_}")
        wait.until(lambda d: expected in d.find_element(By.ID, "view").text)
        assert browser.execute_script("return sessionStorage.getItem('mailbridge.key')"), f"{hash_} signed out"
        assert not browser.find_element(By.ID, "signin").is_displayed(), hash_

    try:
        sign_in(tenant["api_key"], user="u-1")
        nav = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#nav a")]
        assert nav == ["Mailboxes", "Signals"]
        for hash_ in ("#/tenants", "#/rules", "#/audit", "#/webhook"):
            visit(hash_, "not available")
        for hash_ in ("#/messages/..", "#/mailboxes/../messages", "#/messages/%2e%2e", "#/messages/%E0%A4%A"):
            visit(hash_, "No such page")
        calls = [e["message"] for e in browser.get_log("browser") if "/v1/" in e["message"]]
        assert calls == [], calls               # none of those pages called the API, so nothing failed

        browser.find_element(By.ID, "signout").click()
        sign_in(tenant["api_key"])
        nav = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#nav a")]
        assert nav == ["Mailboxes", "Signals", "Rules", "Audit log", "Webhook deliveries"]
        visit("#/tenants", "not available")
        # an erasure is audited but cannot be undone: no Undo button that could only answer 409
        erased = requests.post(f"{served}/v1/erasure", headers={"Authorization": f"Bearer {tenant['api_key']}"},
                               json={"email": "gone@example.com"}, timeout=10)
        assert erased.status_code in (200, 202), erased.text
        visit("#/audit", "erasure")
        assert browser.find_elements(By.CSS_SELECTOR, "tr[data-audit-id]")
        assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-audit-id] button[data-action=undo]")

        browser.find_element(By.ID, "signout").click()
        sign_in(OPERATOR_KEY)
        for hash_ in ("#/mailboxes", "#/signals", "#/webhook"):
            visit(hash_, "not available")
        visit("#/tenants", "Tenants and plans")
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / "failure-roles.png"))
        raise


def test_a_key_or_user_the_browser_cannot_send_is_named_not_reported_as_a_network_error(served, browser):
    """The README writes the demo key as `mbk_…`: pasted literally (or with any character a header cannot carry),
    fetch() refuses to build the request and the console said "Network error: the API did not answer; is it
    running?" — sending a newcomer to debug a stack that is fine."""
    wait = WebDriverWait(browser, 20, poll_frequency=0.2)
    for key, user, expected in (("mbk_…", "", "API key"), ("mbk_abc_def", "jan✓", "X-User-Id")):
        submit_sign_in(browser, wait, served, key, user)
        wait.until(lambda d: d.find_element(By.ID, "signin-error").text)
        message = browser.find_element(By.ID, "signin-error").text
        assert expected in message and "Network error" not in message, message
        assert browser.execute_script("return sessionStorage.getItem('mailbridge.key')") is None


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG of red pixels (RFC 2083: signature, IHDR, one IDAT, IEND)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_the_message_view_shows_inline_cid_images(served, browser):
    """The API rewrites `cid:` images to their download URLs, which need the key (an <img> cannot send it) and
    live under the public base URL (here http://127.0.0.1:8000, not the console's port; a stage prefix in a
    deployment): the console showed a blank box where the message's logo belongs."""
    tenant = requests.post(f"{served}/v1/admin/tenants", headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                           json={"name": "Inline tenant", "plan": "standard"}, timeout=10).json()
    mailbox = make_store_mailbox(tenant["id"], "mbx_inline")
    raw = make_message(subject="With a logo", html='<p>Our logo:</p><img src="cid:logo@acme">',
                       attachments=[("logo.png", "image/png", _png(7, 3))])
    raw = raw.replace(b'Content-Disposition: attachment; filename="logo.png"',
                      b'Content-Disposition: inline; filename="logo.png"\r\nContent-ID: <logo@acme>')
    message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message
    wait = WebDriverWait(browser, 20, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    try:
        submit_sign_in(browser, wait, served, tenant["api_key"])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#view .page"))
        browser.get(f"{served}/console#/messages/{message.message_id}")
        frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe.mail-html"))
        browser.switch_to.frame(frame)
        logo = wait.until(lambda d: d.find_element(By.TAG_NAME, "img"))
        wait.until(lambda d: d.execute_script("return arguments[0].complete", logo))
        assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", logo) \
            == [7, 3]
        assert logo.get_attribute("src").startswith("data:image/png;base64,")
        browser.switch_to.default_content()
        problems = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert problems == []
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / "failure-inline.png"))
        raise
