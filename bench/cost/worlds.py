"""One mailbox per provider kind on its local server, for the cost model: IMAP on Dovecot (devservers), Gmail
on the fake Google, Outlook on the fake Microsoft (TLS with a generated CA, real MSAL). Each world delivers a
message at the provider, reports the provider round trips made so far and makes `neighbour`s: more mailboxes
of the same kind, each in a tenant of its own (`TENANT`-n) with an account and credentials of its own — the
other jobs of a check batch, which the scheduler's tick hands out in mailbox-id order, across tenants."""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from tests.mailfactory import make_message

TENANT = "tnt_cost"


# A business mail's opening as it reads: its first 200 characters — the snippet, which is indexed for search
# (`search/tokens.py`) — hold ~30 distinct words, as real prose does (a repeated phrase would index only a few).
OPENING = ("Dear Ms. Novak,\nthank you for the quick reply. As discussed on Tuesday, we would like to order 40 units "
           "of the standard pallet racks for our Brno warehouse, delivered by the end of next month. Could you "
           "confirm the price, the delivery terms and whether installation is included?\n\n")
DETAILS = ("The racks should match the ones delivered last spring (height 4.5 m, three levels, galvanized). "
           "Our logistics team can receive the shipment on weekdays between 7:00 and 15:00; please let us know "
           "which carrier you plan to use and whether the pallets need to be returned.\n\n")


def message(n: int) -> bytes:
    """A typical business mail: ~6 KB of text and HTML, its opening varied like real prose."""
    body = OPENING + DETAILS * 8 + f"Kind regards,\nJan Dvorak ({n})\nPurchasing, Acme s.r.o.\n"
    return make_message(subject=f"Pallet racks for the Brno warehouse, order {1000 + n}",
                        message_id=f"<cost-{n}@acme.example>", body=body, html=f"<p>{body}</p>",
                        date=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))


def since() -> str:
    return (dt.date.today() - dt.timedelta(days=2)).isoformat()


class ImapWorld:
    kind = "imap"
    # no command counter on the server: an idle sync is connect + LOGIN + one STATUS per folder + LOGOUT, a sync
    # with new mail adds SELECT, UID SEARCH and UID FETCH for the folder (the provider's documented shape), and
    # since the check function hands the job to the worker (another function), the worker's own connect, LOGIN
    # and LOGOUT
    IDLE_ROUND_TRIPS, NEW_MAIL_ROUND_TRIPS = 5, 3 + 3

    def __enter__(self):
        from chalicelib.security.crypto import encrypt_secrets
        from devservers.dovecot import DovecotServer
        from tests.sync_helpers import make_mailbox, reload
        self.server = DovecotServer()
        self.server.start()
        self.user, password = self.server.new_user()
        box = make_mailbox(TENANT, import_since=since(), imap={
            "host": "127.0.0.1", "port": self.server.port, "security": "none", "username": self.user,
            "login_method": "plain"})
        box.update(actions=[type(box).secret_ciphertext.set(
            encrypt_secrets(box.tenant_id, box.mailbox_id, {"password": password}))])
        self.mailbox = reload(box)
        self.syncs = self.new_mail = 0
        return self

    def __exit__(self, *exc):
        self.server.stop()

    def neighbour(self, n: int):
        from chalicelib.security.crypto import encrypt_secrets
        from tests.sync_helpers import make_mailbox, reload
        user, password = self.server.new_user()
        box = make_mailbox(f"{TENANT}-{n}", import_since=since(), imap={
            "host": "127.0.0.1", "port": self.server.port, "security": "none", "username": user,
            "login_method": "plain"})
        box.update(actions=[type(box).secret_ciphertext.set(
            encrypt_secrets(box.tenant_id, box.mailbox_id, {"password": password}))])
        return reload(box)

    def deliver(self, n: int) -> None:
        self.server.append(self.user, "INBOX", message(n))
        self.new_mail += 1

    def round_trips(self) -> int:
        return self.syncs * self.IDLE_ROUND_TRIPS + self.new_mail * self.NEW_MAIL_ROUND_TRIPS


class GmailWorld:
    kind = "gmail"

    def __enter__(self):
        from chalicelib.config import reset_settings
        from devservers.fake_google import FakeGoogle
        from tests.gmail_fixtures import make_gmail_mailbox
        self.google = FakeGoogle().start()
        os.environ.update(self.google.environment())
        reset_settings()
        self.mailbox = make_gmail_mailbox(self.google, TENANT, import_since=since())
        return self

    def __exit__(self, *exc):
        self.google.stop()

    def neighbour(self, n: int):
        from tests.gmail_fixtures import make_gmail_mailbox
        email = f"someone{n}@customer{n}.example"
        self.google.add_account(email)
        return make_gmail_mailbox(self.google, f"{TENANT}-{n}", email=email, import_since=since())

    def deliver(self, n: int) -> None:
        from tests.gmail_fixtures import EMAIL
        self.google.deliver(EMAIL, message(n))

    def round_trips(self) -> int:
        return sum(self.google.calls.values())


class OutlookWorld:
    kind = "outlook"

    def __enter__(self):
        from chalicelib.config import reset_settings
        from devservers.fake_microsoft import FakeMicrosoft
        from devservers.tlsca import make_loopback_tls
        from tests.graph_helpers import ADDRESS, CLIENT_ID, CLIENT_SECRET, outlook_mailbox
        tls = make_loopback_tls(Path(tempfile.mkdtemp(prefix="bench-cost-ms-")))
        self.fake = FakeMicrosoft(tls=tls).start()
        self.fake.identity.register_app(CLIENT_ID, CLIENT_SECRET)
        self.fake.add_user(ADDRESS)
        os.environ.update({"REQUESTS_CA_BUNDLE": self.fake.ca_path,
                           "MAILBRIDGE_MICROSOFT_AUTHORITY_HOST": self.fake.base_url,
                           "MAILBRIDGE_GRAPH_API_ROOT": self.fake.graph_root})
        reset_settings()
        self.mailbox = outlook_mailbox(self.fake, TENANT, import_since=since())
        return self

    def __exit__(self, *exc):
        self.fake.stop()

    def neighbour(self, n: int):
        from tests.graph_helpers import outlook_mailbox
        address = f"someone{n}@customer{n}.example"
        self.fake.add_user(address)
        return outlook_mailbox(self.fake, f"{TENANT}-{n}", address=address, import_since=since())

    def deliver(self, n: int) -> None:
        from tests.graph_helpers import ADDRESS
        self.fake.mail.add_message(ADDRESS, "inbox", message(n))

    def round_trips(self) -> int:
        return len(self.fake.graph_requests)


WORLDS = {"imap": ImapWorld, "gmail": GmailWorld, "outlook": OutlookWorld}
