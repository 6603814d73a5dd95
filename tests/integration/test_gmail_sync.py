"""Guards Gmail sync through the real google-api-python-client/google-auth against the fake Google on loopback:
lost or duplicated mail, idle syncs that cost more than one call per label, stale historyIds, throttling that
is not honoured, revoked grants, vanished messages in a batch, and refresh tokens that are not written back."""
from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.notify import events
from chalicelib.providers.base import ErrorCode, FetchedMessage, MessageRef, ProviderError, ThreadHint
from chalicelib.sync import effects, engine, push, store, worker
from chalicelib.threads import derived
from chalicelib.timeutil import parse_iso, utcnow
from tests.gmail_fixtures import (EMAIL, TOPIC, days_ago, gmail_provider, mail, make_gmail_mailbox,
                                  make_gmail_server)
from tests.sync_helpers import FakeContext, cursor_field, job_event, reload

FAR = float("inf")


def stored(mailbox) -> list[Message]:
    return list(Message.by_mailbox.query(mailbox.mailbox_id))


def sync(mailbox, provider, **options):
    return engine.sync_mailbox(reload(mailbox), provider, FAR, after_store=effects.announce_only,
                               options=engine.SyncOptions(**options))


def test_initial_incremental_and_idle_sync(aws, google):
    """Guards initial import (after:, both labels, paging), incremental history and the one-call idle sync."""
    google.deliver(EMAIL, mail(1), received=days_ago(30))                     # before import_since
    inbox = [google.deliver(EMAIL, mail(n), received=days_ago(1)) for n in range(2, 7)]
    google.deliver(EMAIL, mail(7), labels=("SENT",), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)

    result = sync(mailbox, provider, page_size=2)
    assert result.counts.imported == 6 and len(stored(mailbox)) == 6
    lists = [params for name, params in google.requests if name == "messages.list"]
    assert lists[0]["q"].startswith("after:") and {p["labelIds"] for p in lists} == {"INBOX", "SENT"}
    assert google.calls["messages.list"] == 4                                 # inbox 2+2+1, sent 1
    assert {m.folder for m in stored(mailbox)} == {"inbox", "sent"}

    added = google.deliver(EMAIL, mail(8), received=days_ago(0))
    google.delete(EMAIL, inbox[0])
    result = sync(mailbox, provider)
    assert (result.counts.imported, result.counts.removed) == (1, 1)
    assert {m.provider_id for m in stored(mailbox) if m.removed_at_source} == {inbox[0]}
    assert added in {m.provider_id for m in stored(mailbox)}

    google.calls.clear()
    result = sync(mailbox, gmail_provider(reload(mailbox)))                  # a new job's provider, warm token
    assert result.counts.imported == 0
    assert dict(google.calls) == {"history.list": 2}                          # ONE call per label, no token call


def test_history_404_resyncs_without_duplicates(aws, google):
    """Guards a stale historyId (404): bounded resync re-lists the folder and the store dedupes."""
    for n in range(1, 4):
        google.deliver(EMAIL, mail(n), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    sync(mailbox, provider)
    google.forget_history(EMAIL)
    google.deliver(EMAIL, mail(4), received=days_ago(0))

    with pytest.raises(ProviderError) as raised:
        provider.changes("inbox", cursor_field(reload(mailbox), "inbox"), since=days_ago(7).date(),
                         page_size=100)
    assert raised.value.code == ErrorCode.CURSOR_INVALID

    result = sync(mailbox, provider)
    assert "inbox" in result.resynced_folders
    assert result.counts.imported == 1
    assert len(stored(mailbox)) == 4                                          # no duplicates


def test_label_added_is_a_changed_ref_and_trash_removes(aws, google):
    """Guards label history: a message labelled INBOX later is re-listed as changed; trashed → removed."""
    archived = google.deliver(EMAIL, mail(1), labels=("CATEGORY_UPDATES",), received=days_ago(1))
    kept = google.deliver(EMAIL, mail(2), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    cursor = provider.changes("inbox", None, since=days_ago(7).date(), page_size=100).next_cursor
    google.change_labels(EMAIL, archived, add=("INBOX",))
    google.change_labels(EMAIL, kept, add=("TRASH",), remove=("INBOX",))
    change_set = provider.changes("inbox", cursor, since=days_ago(7).date(), page_size=100)
    assert [ref.provider_id for ref in change_set.changed] == [archived]
    assert change_set.new == () and change_set.removed == (kept,)
    assert int(change_set.next_cursor[2:]) > int(cursor[2:])


def test_a_message_restored_from_trash_is_back_in_the_inbox(aws, google):
    """Guards against: a message trashed (INBOX removed → removed_at_source) and restored (INBOX added again, a
    known `changed` ref) staying removed — hidden from lists, threads and search while Gmail shows it."""
    kept = google.deliver(EMAIL, mail(1), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    sync(mailbox, provider)
    google.change_labels(EMAIL, kept, add=("TRASH",), remove=("INBOX",))
    assert sync(mailbox, provider).counts.removed == 1
    google.change_labels(EMAIL, kept, add=("INBOX",), remove=("TRASH",))
    result = sync(mailbox, provider)
    assert (result.counts.imported, result.counts.removed) == (0, 0)
    [message] = stored(mailbox)
    assert message.provider_id == kept and message.removed_at_source is None
    assert int(reload(mailbox).imported_count) == 1
    assert int(reload(mailbox).removed_count) == 0      # the count is of messages removed now, not of removals
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 1
    google.change_labels(EMAIL, kept, add=("TRASH",), remove=("INBOX",))
    sync(mailbox, provider)
    assert int(reload(mailbox).removed_count) == 1


def test_mail_to_self_carrying_inbox_and_sent_is_one_message(aws, google):
    """Guards against: one Gmail message labelled both INBOX and SENT (mail to self) stored twice — once per
    label — with two `message.created` events, a double `imported` count and the note twice in the CRM."""
    first = google.deliver(EMAIL, mail(1, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(1))
    google.deliver(EMAIL, mail(2), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    sync(mailbox, provider)
    later = google.deliver(EMAIL, mail(3, sender=EMAIL), labels=("INBOX", "SENT", "UNREAD"), received=days_ago(0))
    google.change_labels(EMAIL, first, add=("UNREAD",))
    sync(mailbox, provider)
    mine = sorted((m.provider_id, m.folder, m.direction) for m in stored(mailbox) if m.provider_id in (first, later))
    assert mine == [(first, "sent", "outbound"), (later, "sent", "outbound")]
    assert len(stored(mailbox)) == 3 and int(reload(mailbox).imported_count) == 3
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 3


def test_mail_to_self_stays_in_the_inbox_of_a_mailbox_that_does_not_sync_sent(aws, google):
    """Guards against: mail to self left out of the inbox for "sent" while that mailbox does not sync sent."""
    google.deliver(EMAIL, mail(1, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(1))
    mailbox = make_gmail_mailbox(google, sync_folders=["inbox"])
    provider = gmail_provider(mailbox)
    sync(mailbox, provider)
    later = google.deliver(EMAIL, mail(2, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(0))
    sync(mailbox, provider)
    assert sorted(m.folder for m in stored(mailbox)) == ["inbox", "inbox"] and later in {
        m.provider_id for m in stored(mailbox)}


def test_sent_added_later_does_not_store_mail_to_self_the_inbox_has_again(aws, google):
    """Guards against: `sent` added to sync_folders later storing a mail to self (one Gmail message, INBOX and
    SENT) the inbox had stored a second time — a second `message.created`, `imported` +1 — where a mailbox
    syncing both from the start stores it once; and its later trash (seen in Sent's history) not marking it."""
    first = google.deliver(EMAIL, mail(1, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(1))
    google.deliver(EMAIL, mail(2), received=days_ago(1))
    mailbox = make_gmail_mailbox(google, sync_folders=["inbox"])
    sync(mailbox, gmail_provider(mailbox))
    later = google.deliver(EMAIL, mail(3, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(0))
    sync(mailbox, gmail_provider(reload(mailbox)))
    assert len(stored(mailbox)) == 3

    mailbox.update(actions=[Mailbox.sync_folders.set(["inbox", "sent"])])
    google.deliver(EMAIL, mail(4, sender=EMAIL), labels=("SENT",), received=days_ago(0))
    result = sync(mailbox, gmail_provider(reload(mailbox)))
    assert result.counts.imported == 1                                        # only the new sent message
    mine = sorted((m.provider_id, m.folder, m.direction) for m in stored(mailbox) if m.provider_id in (first, later))
    assert mine == [(first, "inbox", "outbound"), (later, "inbox", "outbound")]       # kept where first stored
    assert len(stored(mailbox)) == 4 and int(reload(mailbox).imported_count) == 4
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 4
    [inbox_copy] = [m for m in stored(mailbox) if m.provider_id == first]
    again = store.save_fetched(reload(mailbox), FetchedMessage(MessageRef("sent", first, also_in=("inbox",)),
                                                               google.accounts[EMAIL].messages[first].raw))
    assert (again.created, again.message.message_id) == (False, inbox_copy.message_id)   # the one-message path

    google.change_labels(EMAIL, first, add=("TRASH",), remove=("INBOX",))
    assert sync(mailbox, gmail_provider(reload(mailbox))).counts.removed == 1
    assert [m.provider_id for m in stored(mailbox) if m.removed_at_source] == [first]


def test_inbox_resynced_after_sent_was_turned_off_does_not_store_mail_to_self_again(aws, google):
    """Guards against the same duplicate the other way round: mail to self stored in `sent`, then sent turned
    off and the inbox re-listed (a stale historyId) storing it again in the inbox."""
    first = google.deliver(EMAIL, mail(1, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    sync(mailbox, gmail_provider(mailbox))
    mailbox.update(actions=[Mailbox.sync_folders.set(["inbox"])])
    google.forget_history(EMAIL)
    result = sync(mailbox, gmail_provider(reload(mailbox)))
    assert "inbox" in result.resynced_folders and result.counts.imported == 0
    assert [(m.provider_id, m.folder) for m in stored(mailbox)] == [(first, "sent")]
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 1


def test_archived_mail_stays_and_only_what_a_synced_label_still_carries_is_followed(aws, google):
    """Guards the documented limit of label-filtered history (docs/api.md, "Folders synced"): an archived message
    (INBOX removed) stays stored and present; its later trash or deletion is NOT seen (INBOX-filtered history no
    longer names it) while the idle sync stays ONE history call per label; a message back in the inbox, or a
    mail to self (still SENT), is followed again — its trash or deletion marks it removed."""
    archived = google.deliver(EMAIL, mail(1), received=days_ago(1))
    returned = google.deliver(EMAIL, mail(2), received=days_ago(1))
    to_self = google.deliver(EMAIL, mail(3, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    sync(mailbox, gmail_provider(mailbox))
    for message_id in (archived, returned, to_self):
        google.change_labels(EMAIL, message_id, remove=("INBOX",))
    result = sync(mailbox, gmail_provider(reload(mailbox)))
    assert (result.counts.imported, result.counts.removed) == (0, 0)
    assert not [m for m in stored(mailbox) if m.removed_at_source]          # archiving removes nothing

    google.change_labels(EMAIL, returned, add=("INBOX",))
    google.change_labels(EMAIL, archived, add=("TRASH",))
    google.change_labels(EMAIL, returned, add=("TRASH",), remove=("INBOX",))
    google.delete(EMAIL, to_self)
    google.calls.clear()
    result = sync(mailbox, gmail_provider(reload(mailbox)))
    assert google.calls["history.list"] == 2                                  # one history walk per label
    assert sorted(m.provider_id for m in stored(mailbox) if m.removed_at_source) == sorted([returned, to_self])
    assert archived not in {m.provider_id for m in stored(mailbox) if m.removed_at_source}   # the limitation


def test_trash_and_spam_labels_added_remove_and_their_removal_restores(aws, google):
    """Guards against: a message trashed or marked spam while Gmail's history shows only `labelsAdded`
    TRASH/SPAM (the folder's label not removed in the same record) staying in the CRM, and one taken out of
    the trash (`labelsRemoved` TRASH) staying removed."""
    trashed = google.deliver(EMAIL, mail(1), received=days_ago(1))
    spam = google.deliver(EMAIL, mail(2), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    sync(mailbox, provider)
    google.change_labels(EMAIL, trashed, add=("TRASH",))
    google.change_labels(EMAIL, spam, add=("SPAM",))
    assert sync(mailbox, provider).counts.removed == 2
    assert all(m.removed_at_source for m in stored(mailbox))
    google.change_labels(EMAIL, trashed, remove=("TRASH",))
    result = sync(mailbox, provider)
    assert (result.counts.imported, result.counts.restored) == (0, 1)
    assert {m.provider_id for m in stored(mailbox) if not m.removed_at_source} == {trashed}


def test_drafts_chats_and_spam_are_not_imported_and_a_sent_draft_is(aws, google):
    """Guards against: DRAFT, CHAT or SPAM mail imported as inbox/sent mail, or a draft that is then sent (its
    labels become SENT) never imported."""
    draft = google.deliver(EMAIL, mail(1, sender=EMAIL), labels=("DRAFT",), received=days_ago(1))
    google.deliver(EMAIL, mail(2), labels=("CHAT",), received=days_ago(1))
    google.deliver(EMAIL, mail(3), labels=("SPAM", "UNREAD"), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    assert sync(mailbox, provider).counts.imported == 0
    google.deliver(EMAIL, mail(4), labels=("SPAM", "INBOX"), received=days_ago(0))
    google.change_labels(EMAIL, draft, add=("SENT",), remove=("DRAFT",))
    assert sync(mailbox, provider).counts.imported == 1
    assert [(m.provider_id, m.folder) for m in stored(mailbox)] == [(draft, "sent")]


def test_a_message_listed_on_two_pages_is_stored_once(aws, google):
    """Guards against: mail arriving while the import pages through `messages.list` (newest first) shifting
    a message onto the next page too, and being stored, counted and announced twice."""
    for n in range(1, 6):
        google.deliver(EMAIL, mail(n), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    changes = provider.changes

    def arriving_meanwhile(folder, cursor, **kwargs):
        answer = changes(folder, cursor, **kwargs)
        if folder == "inbox" and cursor is None:
            google.deliver(EMAIL, mail(6), received=days_ago(0))
        return answer

    provider.changes = arriving_meanwhile
    sync(mailbox, provider, page_size=2)
    assert google.gets["raw"] == 6                   # a message came twice …
    assert len(stored(mailbox)) == 5
    sync(mailbox, provider)                                        # the import's history replay: the newcomer
    assert sorted(m.rfc_message_id for m in stored(mailbox)) == [f"gmail-{n}@acme.example" for n in range(1, 7)]
    assert int(reload(mailbox).imported_count) == 6                # … and is stored, counted, announced once
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 6


@pytest.mark.parametrize("status,reason,retry_after,expected", [
    (429, None, 120, 120.0),
    (403, "rateLimitExceeded", None, 30.0),
    (403, "userRateLimitExceeded", 90, 90.0),
])
def test_throttling_raises_throttled_with_retry_after(aws, google, status, reason, retry_after, expected):
    """Guards 429 / 403 rate limits: THROTTLED with retry_after, never slept through for long in Lambda."""
    mailbox = make_gmail_mailbox(google)
    sleeps: list[float] = []
    provider = gmail_provider(mailbox, sleeps)
    google.fail("getProfile" if False else "profile", status, reason=reason, retry_after=retry_after, times=5)
    with pytest.raises(ProviderError) as raised:
        provider.changes("inbox", None, since=days_ago(7).date(), page_size=10)
    assert raised.value.code == ErrorCode.THROTTLED and raised.value.retry_after == expected
    assert all(s <= provider.client.max_inline_wait for s in sleeps)


def test_short_retry_after_is_slept_then_retried(aws, google):
    """Guards Retry-After being honoured (not googleapiclient's own backoff) for a short wait."""
    google.deliver(EMAIL, mail(1), received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    sleeps: list[float] = []
    provider = gmail_provider(mailbox, sleeps)
    google.fail("messages.list", 429, retry_after=2)
    change_set = provider.changes("inbox", None, since=days_ago(7).date(), page_size=10)
    assert len(change_set.new) == 1 and sleeps == [2.0]
    google.fail("messages.get", 429, retry_after=1)                            # a throttled batch part
    fetched = list(provider.fetch(change_set.new, max_bytes=10_000_000))
    assert fetched[0].raw == mail(1) and sleeps == [2.0, 1.0]


def test_revoked_grant_turns_the_mailbox_auth_error(aws, google):
    """Guards invalid_grant: AUTH_REVOKED from the provider, and the worker marks the mailbox auth_error."""
    mailbox = make_gmail_mailbox(google)
    google.revoke(EMAIL)
    with pytest.raises(ProviderError) as raised:
        gmail_provider(mailbox).changes("inbox", None, since=days_ago(7).date(), page_size=10)
    assert raised.value.code == ErrorCode.AUTH_REVOKED

    worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext())
    assert reload(mailbox).status == "auth_error"
    assert events.list_events(mailbox.tenant_id, "mailbox.status_changed")


def test_401_refreshes_once_then_auth_revoked(aws, google):
    """Guards a 401: the token is refreshed exactly once; a second 401 is AUTH_REVOKED, not a retry loop."""
    mailbox = make_gmail_mailbox(google)
    provider = gmail_provider(mailbox)
    provider.test_connection()
    google.expire_access_tokens()
    provider.test_connection()                                                # 401 → refresh → ok
    assert google.calls["token"] == 2 and provider.client.credentials.refresh_calls == 1
    google.fail("profile", 401, times=3)
    with pytest.raises(ProviderError) as raised:
        provider.test_connection()
    assert raised.value.code == ErrorCode.AUTH_REVOKED
    assert provider.client.credentials.refresh_calls == 2


def test_refresh_token_rotation_is_written_back(aws, google):
    """Guards a rotated refresh token being lost (the next refresh would fail with invalid_grant)."""
    mailbox = make_gmail_mailbox(google)
    google.rotate_refresh_tokens = True
    before = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load()
    gmail_provider(mailbox).test_connection()
    after = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load()
    assert after.version == before.version + 1
    assert after.secrets["refresh_token"] != before.secrets["refresh_token"]
    gmail_provider(reload(mailbox)).test_connection()                        # the new token works


def test_batch_fetch_marks_vanished_parts_and_splits_at_50(aws, google):
    """Guards a per-part 404 failing the whole batch, and batches over Gmail's 50-request limit."""
    ids = [google.deliver(EMAIL, mail(n), received=days_ago(1)) for n in range(60)]
    google.delete(EMAIL, ids[3], record_history=False)
    provider = gmail_provider(make_gmail_mailbox(google))
    fetched = list(provider.fetch([MessageRef("inbox", i) for i in ids], max_bytes=10_000_000))
    assert google.calls["batch"] == 4 and google.gets["raw"] == 59   # sized first: 2 + 2 batches
    assert google.gets["minimal"] == 60
    assert [f.ref.provider_id for f in fetched if f.vanished] == [ids[3]]
    assert sum(1 for f in fetched if f.raw) == 59
    assert next(f for f in fetched if f.ref.provider_id == ids[0]).raw == mail(0)


def test_bodies_are_sized_first_oversize_skipped_unread_and_batches_bounded_in_bytes(aws, google, monkeypatch):
    """Guards against: message bodies of unknown size downloaded 20 to a batch (Gmail takes mail of up to
    50 MB; a batch answer is held whole, base64-encoded) — an out-of-memory worker retried until the DLQ — and
    a message over MAILBRIDGE_MAX_MESSAGE_BYTES downloaded only to be skipped (docs/operations.md)."""
    from chalicelib.providers.gmail import adapter
    monkeypatch.setattr(adapter, "RAW_BATCH_BYTES", 250_000)
    big = google.deliver(EMAIL, mail(1) + b"x" * 600_000, received=days_ago(1))
    mid = [google.deliver(EMAIL, mail(n) + b"y" * 100_000, received=days_ago(1)) for n in (2, 3, 4)]
    small = google.deliver(EMAIL, mail(5), received=days_ago(1))
    provider = gmail_provider(make_gmail_mailbox(google))
    fetched = list(provider.fetch([MessageRef("inbox", i) for i in [big, *mid, small]], max_bytes=500_000))
    assert [(f.ref.provider_id, f.skipped_reason) for f in fetched if f.raw is None] == [
        (big, f"size {len(mail(1)) + 600_000} exceeds limit 500000")]
    assert sorted(f.ref.provider_id for f in fetched if f.raw) == sorted([*mid, small])
    assert google.gets["raw"] == 4                  # the big one's body never asked for
    assert google.calls["batch"] == 3                              # one sizing batch, then 2 + 2 bodies
    assert len(list(provider.fetch([MessageRef("inbox", big)], max_bytes=10_000_000))[0].raw) > 600_000


def test_fetch_names_the_other_role_folder_holding_a_mail_to_self(aws, google):
    """Guards against: the store unable to recognise a mail to self it holds under the other role folder
    (`MessageRef.also_in`) — for one sized first and skipped as oversize too — so a folder added later stores
    it again; a named label's folder keeps its own copy (never a twin)."""
    big = google.deliver(EMAIL, mail(1, sender=EMAIL) + b"x" * 600_000, labels=("INBOX", "SENT"), received=days_ago(1))
    small = google.deliver(EMAIL, mail(2, sender=EMAIL), labels=("INBOX", "SENT"), received=days_ago(1))
    plain = google.deliver(EMAIL, mail(3, sender=EMAIL), labels=("SENT",), received=days_ago(1))
    provider = gmail_provider(make_gmail_mailbox(google))
    fetched = list(provider.fetch([MessageRef("sent", i) for i in (big, small, plain)], max_bytes=500_000))
    assert {f.ref.provider_id: (f.ref.also_in, f.raw is None) for f in fetched} == {
        big: (("inbox",), True), small: (("inbox",), False), plain: ((), False)}
    assert [f.ref.also_in for f in provider.fetch([MessageRef("inbox", small)], max_bytes=500_000)] == [("sent",)]
    assert [f.ref.also_in for f in provider.fetch([MessageRef("Label_1", small)], max_bytes=500_000)] == [()]


def test_send_watch_and_stop(aws, google):
    """Guards send (raw + threadId) and the push lifecycle calls."""
    original = google.deliver(EMAIL, mail(1), received=days_ago(1))
    provider = gmail_provider(make_gmail_mailbox(google))
    result = provider.send(mail(2, "-reply"), sender=EMAIL, recipients=["jan@acme.example"],
                           thread=ThreadHint(mode="reply", provider_thread_id=original))
    assert result.thread_id == original and result.provider_message_id
    assert google.sent[0]["raw"] == mail(2, "-reply") and google.sent[0]["threadId"] == original

    state = provider.start_push()
    assert google.accounts[EMAIL].watch["topicName"] == TOPIC
    assert google.accounts[EMAIL].watch["labelIds"] == ["INBOX", "SENT"]
    assert state.resource["email"] == EMAIL and state.expires_at.endswith("Z")
    assert parse_iso(state.expires_at) - utcnow() > timedelta(days=6)
    provider.renew_push(state)
    provider.stop_push(state)
    assert google.accounts[EMAIL].watch is None and google.calls["watch"] == 2


def test_the_renewer_re_watches_gmail_daily_not_only_before_expiry(aws, google, monkeypatch):
    """Guards against renewing a 7-day Gmail watch only in its last day: Google recommends calling watch once a
    day (developers.google.com/gmail/api/guides/push), so a failed renewal has days to be retried."""
    mailbox = make_gmail_mailbox(google)
    assert push.maintain(reload(mailbox), provider_factory=gmail_provider) == "started"
    assert reload(mailbox).push_renewed_at
    assert push.maintain(reload(mailbox), provider_factory=gmail_provider) == "current"
    assert google.calls["watch"] == 1

    later = utcnow() + timedelta(hours=25)                 # the watch still has ~6 days, but a day has passed
    monkeypatch.setattr(push, "utcnow", lambda: later)
    assert push.maintain(reload(mailbox), provider_factory=gmail_provider) == "renewed"
    assert google.calls["watch"] == 2
    monkeypatch.undo()
    assert push.maintain(reload(mailbox), provider_factory=gmail_provider) == "current"


def test_a_mail_server_without_push_is_not_a_failing_watch(aws, google):
    """Guards optional push (issue 9: "an optional push"): a gmail mail server without `push` must not leave
    its mailboxes with a push_error, an hourly warning and a mailbox.push_expiring event."""
    mailbox = make_gmail_mailbox(google, server=make_gmail_server(google, push={}))
    assert push.maintain(reload(mailbox), provider_factory=gmail_provider) == "n/a"
    assert reload(mailbox).push_error is None and reload(mailbox).push_state is None
    assert events.list_events(mailbox.tenant_id, "mailbox.push_expiring") == []
    assert google.calls["watch"] == 0


def test_raw_message_is_base64url_decoded_byte_exact(aws, google):
    """Guards raw MIME bytes changing on the way (base64url with '-'/'_' and stripped padding)."""
    raw = mail(1) + bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    message_id = google.deliver(EMAIL, raw, received=days_ago(1))
    provider = gmail_provider(make_gmail_mailbox(google))
    [fetched] = provider.fetch([MessageRef("inbox", message_id)], max_bytes=10_000_000)
    assert fetched.raw == raw
    assert base64.urlsafe_b64encode(raw)  # sanity: the payload needs the url-safe alphabet


def test_gmail_thread_ids_group_messages_into_one_conversation(aws, google):
    """Guards Gmail's threadId as thread identity: messages Gmail threads together (no References between
    them) are one conversation; a message of another thread is not."""
    first = google.deliver(EMAIL, mail(1), thread_id="thr-a", received=days_ago(1))
    second = google.deliver(EMAIL, mail(2, "-other-subject"), thread_id="thr-a", received=days_ago(1))
    other = google.deliver(EMAIL, mail(3), thread_id="thr-b", received=days_ago(1))
    mailbox = make_gmail_mailbox(google)
    sync(mailbox, gmail_provider(mailbox))
    by_provider = {m.provider_id: m for m in stored(mailbox)}
    assert by_provider[first].thread_id == "thr-a"
    derived.remember(mailbox.tenant_id, [m.message_id for m in by_provider.values()])
    settled = {pid: Message.get(m.message_id) for pid, m in by_provider.items()}
    assert settled[first].conversation_id == settled[second].conversation_id != settled[other].conversation_id
