"""A thin Gmail API client over google-api-python-client: the service, retries, batches and quota pacing in
one place.

- The service is built from the discovery document bundled with googleapiclient (`static_discovery=True`; only
  `gmail.v1.json` is needed) at `MAILBRIDGE_GMAIL_API_ROOT` (`client_options.api_endpoint`), over an
  `AuthorizedHttp` whose credentials come from the mailbox's token source (`tokens.TokenSourceCredentials`).
- Retries: googleapiclient's `num_retries` sleeps its own exponential backoff and ignores `Retry-After`, so it
  is 0 here; `call()` retries THROTTLED/TEMPORARY answers itself, waiting `Retry-After` (RFC 9110 §10.2.3) or a
  short backoff through the injectable `sleep` — but only when the wait is short (`max_inline_wait`); a longer
  one is raised as THROTTLED with `retry_after` so the engine re-queues the job instead of sleeping in Lambda.
- Batches (developers.google.com/gmail/api/guides/batch): `POST <root>batch/gmail/v1`, at most 50 requests per
  batch ("larger batch sizes are likely to trigger rate limiting"), each part answered on its own.
- Quota: 250 quota units per user per second (developers.google.com/gmail/api/reference/quota; messages.get =
  5, messages.list = 5, history.list = 2, getProfile = 1, watch = 100, messages.send = 100); `Pacer` keeps one
  client under it by waiting for the next second.
"""
from __future__ import annotations

import socket
import time
from typing import Any, Callable, Iterable, Sequence

import httplib2
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery
from googleapiclient.http import BatchHttpRequest

from chalicelib.providers.base import AccessTokens, ErrorCode, ProviderError
from chalicelib.providers.gmail.errors import translate
from chalicelib.providers.gmail.tokens import TokenSourceCredentials

MAX_BATCH = 50
QUOTA_UNITS_PER_SECOND = 250
UNITS = {"messages.get": 5, "messages.list": 5, "history.list": 2, "getProfile": 1, "watch": 100, "stop": 1,
         "messages.send": 100, "labels.list": 1}
RETRYABLE = (ErrorCode.THROTTLED, ErrorCode.TEMPORARY)
# Failures that prove a request never reached Google (nothing can have been sent).
NOT_REACHED = (ConnectionRefusedError, socket.gaierror, httplib2.ServerNotFoundError)


class Pacer:
    """At most `limit` quota units per one-second window (waits for the next window through `sleep`)."""

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float] = time.monotonic,
                 limit: int = QUOTA_UNITS_PER_SECOND):
        self.sleep, self.clock, self.limit = sleep, clock, limit
        self.window_start = clock()
        self.used = 0

    def spend(self, units: int) -> None:
        now = self.clock()
        if now - self.window_start >= 1.0:
            self.window_start, self.used = now, 0
        if self.used + units > self.limit:
            self.sleep(max(0.0, self.window_start + 1.0 - now))
            self.window_start, self.used = self.clock(), 0
        self.used += units


class GmailClient:
    """One mailbox's Gmail API (`userId="me"`: the account the token belongs to)."""

    def __init__(self, tokens: AccessTokens, *, api_root: str, timeout: float = 30.0,
                 sleep: Callable[[float], None] | None = None, attempts: int = 3, max_inline_wait: float = 10.0):
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        self.sleep = sleep or time.sleep
        self.attempts, self.max_inline_wait = attempts, max_inline_wait
        self.credentials = TokenSourceCredentials(tokens)
        # One refresh on a 401, then the 401 stands (→ AUTH_REVOKED): max_refresh_attempts=1.
        self.http = AuthorizedHttp(self.credentials, http=httplib2.Http(timeout=timeout), max_refresh_attempts=1)
        self.pacer = Pacer(self.sleep)
        self.calls = 0           # HTTP round trips (a batch counts once)
        self.service = discovery.build("gmail", "v1", http=self.http, static_discovery=True,
                                       cache_discovery=False, client_options={"api_endpoint": self.api_root})
        self.users = self.service.users()

    # ---- retries ----------------------------------------------------------------------------------------
    def _wait_or_raise(self, error: ProviderError, attempt: int) -> None:
        """Sleep before the next attempt, or raise when out of attempts / the wait is too long."""
        if error.code not in RETRYABLE or attempt + 1 >= self.attempts:
            raise error
        wait = error.retry_after if error.retry_after is not None else min(2.0 ** attempt, self.max_inline_wait)
        if wait > self.max_inline_wait:
            raise error
        self.sleep(wait)

    def call(self, request_factory: Callable[[], Any], *, resource: str = "call", method: str = "") -> Any:
        """Execute a googleapiclient request (built afresh per attempt) with retries; returns its JSON."""
        for attempt in range(self.attempts):
            self.pacer.spend(UNITS.get(method, 5))
            self.calls += 1
            try:
                return request_factory().execute(num_retries=0)
            except Exception as exc:  # noqa: BLE001 - every failure goes through the one translator
                self._wait_or_raise(translate(exc, resource=resource), attempt)
        raise AssertionError("unreachable")

    # ---- calls ------------------------------------------------------------------------------------------
    def get_profile(self) -> dict:
        return self.call(lambda: self.users.getProfile(userId="me"), resource="profile", method="getProfile")

    def list_messages(self, *, label: str, query: str, page_token: str | None, max_results: int) -> dict:
        return self.call(lambda: self.users.messages().list(userId="me", labelIds=[label], q=query,
                                                            pageToken=page_token, maxResults=max_results),
                         resource="messages", method="messages.list")

    def list_history(self, *, start_history_id: str, label: str, history_types: Sequence[str],
                     page_token: str | None, max_results: int) -> dict:
        return self.call(lambda: self.users.history().list(userId="me", startHistoryId=start_history_id,
                                                           labelId=label, historyTypes=list(history_types),
                                                           pageToken=page_token, maxResults=max_results),
                         resource="history", method="history.list")

    def list_labels(self) -> list[dict]:
        """users.labels.list: every label of the account ({id, name, type})."""
        answer = self.call(lambda: self.users.labels().list(userId="me"), resource="labels", method="labels.list")
        return list(answer.get("labels") or [])

    def watch(self, body: dict) -> dict:
        return self.call(lambda: self.users.watch(userId="me", body=body), resource="watch", method="watch")

    def stop(self) -> None:
        self.call(lambda: self.users.stop(userId="me"), resource="watch", method="stop")

    def send(self, body: dict) -> dict:
        """messages.send, once: never retried here, since `messages.send` takes no idempotency key. A 5xx or a
        transport failure once the request may have reached Google (anything but a refused connection or an
        unresolvable host) is raised with `maybe_sent`: Google may have sent it before the answer was lost
        (the outbox then looks for it in Sent instead of sending it again)."""
        self.pacer.spend(UNITS["messages.send"])
        self.calls += 1
        try:
            return self.users.messages().send(userId="me", body=body).execute(num_retries=0)
        except Exception as exc:  # noqa: BLE001
            error = translate(exc, resource="send")
            error.maybe_sent = error.code is ErrorCode.TEMPORARY and not isinstance(exc, NOT_REACHED)
            raise error from None

    def find_by_message_id(self, label: str, rfc_message_id: str) -> list[dict]:
        """messages.list with the search operator `rfc822msgid:` (support.google.com/mail/answer/7190): the
        messages under `label` whose Message-ID header is `rfc_message_id`."""
        answer = self.list_messages(label=label, query=f"rfc822msgid:{rfc_message_id}", page_token=None,
                                    max_results=10)
        return list(answer.get("messages") or [])

    def get_raw_batch(self, ids: Sequence[str]) -> Iterable[tuple[str, dict | None]]:
        """(id, messages.get format=raw answer) per id, None for a message that vanished (its part's 404)."""
        return self.get_batch(ids, format="raw")

    def get_minimal(self, ids: Sequence[str]) -> dict[str, dict | None]:
        """{id: messages.get format=minimal answer with `sizeEstimate` and `labelIds`} (no body: a few hundred
        bytes a message), None for a message that vanished — what to know before downloading bodies of unknown
        size."""
        return dict(self.get_batch(ids, format="minimal", fields="id,sizeEstimate,labelIds"))

    def get_batch(self, ids: Sequence[str], *, format: str,
                  fields: str | None = None) -> Iterable[tuple[str, dict | None]]:
        """(id, messages.get answer) per id, None for a message that vanished (its part's 404).
        Batches of ≤50; throttled parts are retried like single calls; other part errors raise."""
        options = {"format": format} | ({"fields": fields} if fields else {})
        for start in range(0, len(ids), MAX_BATCH):
            pending = list(ids[start:start + MAX_BATCH])
            for attempt in range(self.attempts):
                answers: dict[str, dict | None] = {}
                failed: dict[str, ProviderError] = {}

                def collect(request_id: str, response: Any, exception: Exception | None) -> None:
                    if exception is None:
                        answers[request_id] = response
                        return
                    error = translate(exception, resource="message")
                    if error.code == ErrorCode.NOT_FOUND:
                        answers[request_id] = None
                    else:
                        failed[request_id] = error

                batch = BatchHttpRequest(callback=collect, batch_uri=self.api_root + "batch/gmail/v1")
                for message_id in pending:
                    batch.add(self.users.messages().get(userId="me", id=message_id, **options),
                              request_id=message_id)
                self.pacer.spend(UNITS["messages.get"] * len(pending))
                self.calls += 1
                try:
                    batch.execute(http=self.http)
                except Exception as exc:  # noqa: BLE001
                    self._wait_or_raise(translate(exc, resource="batch"), attempt)
                    continue
                for message_id in pending:
                    if message_id in answers:
                        yield message_id, answers[message_id]
                pending = [m for m in pending if m in failed]
                if not pending:
                    break
                fatal = [e for e in failed.values() if e.code not in RETRYABLE]
                if fatal:
                    raise fatal[0]
                self._wait_or_raise(max(failed.values(), key=lambda e: e.retry_after or 0), attempt)
