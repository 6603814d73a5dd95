"""A thin Microsoft Graph HTTP client: auth header, `Prefer: IdType="ImmutableId"`, the per-mailbox
concurrency cap, Retry-After, 401 → one fresh token, `$batch` — all in one place.

Protocol facts (learn.microsoft.com):
- "Get immutable identifiers for Outlook resources": `Prefer: IdType="ImmutableId"` on EVERY request
  (subscriptions too) makes message ids stable across folder moves; ids are then our `provider_id`.
- "Microsoft Graph throttling guidance" / Outlook service limits: at most 4 concurrent requests per mailbox
  and app; 429/503 carry `Retry-After` (seconds) which the client honours (injectable `sleep`) up to
  `max_inline_wait`; a longer wait, or throttling that persists, raises THROTTLED so the engine re-queues.
- "Combine multiple requests in one HTTP call using JSON batching": at most 20 requests per `$batch`.
- Links (`@odata.nextLink`/`@odata.deltaLink`) are followed only when they start with the configured Graph
  root: the bearer token is never sent to another host.
HTTPS is verified by requests (against `REQUESTS_CA_BUNDLE` when set, the system store otherwise); a
non-https root is refused.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

import requests

from chalicelib.logs import logger
from chalicelib.providers.base import AccessTokens, ErrorCode, ProviderError
from chalicelib.providers.graph.errors import graph_error, network_error, retry_after_seconds

MAX_CONCURRENT_PER_MAILBOX = 4
BATCH_LIMIT = 20
IMMUTABLE_ID = 'IdType="ImmutableId"'
THROTTLE_ATTEMPTS = 3
MAX_INLINE_WAIT = 30.0

_semaphores: dict[str, threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def mailbox_semaphore(key: str) -> threading.BoundedSemaphore:
    """One semaphore per mailbox in this process: every client of the mailbox shares the cap."""
    with _semaphores_lock:
        if key not in _semaphores:
            _semaphores[key] = threading.BoundedSemaphore(MAX_CONCURRENT_PER_MAILBOX)
        return _semaphores[key]


class GraphClient:
    def __init__(self, root: str, tokens: AccessTokens, *, mailbox_key: str, timeout: float = 30.0,
                 sleep: Callable[[float], None] | None = None, session: requests.Session | None = None,
                 max_inline_wait: float = MAX_INLINE_WAIT):
        if not root.startswith("https://"):
            raise ProviderError(ErrorCode.PERMANENT, "the Graph API root must be an https URL")
        self.root = root.rstrip("/")
        self.tokens, self.timeout = tokens, timeout
        self.sleep = sleep or time.sleep
        self.session = session or requests.Session()
        self.max_inline_wait = max_inline_wait
        self.semaphore = mailbox_semaphore(mailbox_key)

    def url(self, path_or_link: str) -> str:
        if path_or_link.startswith("https://"):
            if not path_or_link.startswith(self.root + "/"):
                raise ProviderError(ErrorCode.CURSOR_INVALID, "link points outside the configured Graph root")
            return path_or_link
        return self.root + "/" + path_or_link.lstrip("/")

    def request(self, method: str, path_or_link: str, *, what: str = "request",
                headers: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """One Graph call with retries for 401 (once, fresh token) and 429/503 (Retry-After). Returns the
        response (status < 400) or raises the translated ProviderError."""
        url = self.url(path_or_link)
        refreshed = False
        for attempt in range(THROTTLE_ATTEMPTS):
            response = self._send(method, url, headers, kwargs)
            if response.status_code < 400:
                return response
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self.tokens.invalidate()
                response = self._send(method, url, headers, kwargs)
                if response.status_code < 400:
                    return response
            error = graph_error(response.status_code, _json(response), response.headers, what=what)
            if error.code != ErrorCode.THROTTLED:
                raise error
            wait = retry_after_seconds(response.headers) or error.retry_after or 1.0
            if attempt == THROTTLE_ATTEMPTS - 1 or wait > self.max_inline_wait:
                raise error
            logger.info("graph throttled; waiting", extra={"status": response.status_code, "wait": wait})
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, headers: Mapping[str, str] | None, kwargs: dict) -> requests.Response:
        prefer = [IMMUTABLE_ID]
        merged = {"Authorization": f"Bearer {self.tokens.access_token()}", "Accept": "application/json"}
        for name, value in (headers or {}).items():
            if name.lower() == "prefer":
                prefer.append(value)
            else:
                merged[name] = value
        merged["Prefer"] = ", ".join(prefer)
        with self.semaphore:
            try:
                return self.session.request(method, url, headers=merged, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                raise network_error(exc) from None

    def get_json(self, path_or_link: str, **kwargs: Any) -> dict:
        return _json(self.request("GET", path_or_link, **kwargs))

    def batch(self, requests_: list[dict]) -> dict[str, dict]:
        """One `$batch` of ≤ 20 sub-requests ({id, method, url}); returns the responses by id (each
        {status, headers, body}; per-item failures are left to the caller)."""
        if len(requests_) > BATCH_LIMIT:
            raise ValueError(f"a Graph $batch holds at most {BATCH_LIMIT} requests")
        body = _json(self.request("POST", "$batch", json={"requests": requests_}, what="$batch"))
        return {str(item.get("id")): item for item in body.get("responses") or []}


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
