"""Google's public keys for OIDC tokens, cached: the push handler must answer fast and must not fetch the keys
for every push.

`CachedCertsRequest` is the `request` argument of `google.oauth2.id_token.verify_token`, which calls it as a
`google.auth.transport.Request` — `request(url, method="GET")` answering `.status` and `.data`
(google/oauth2/id_token.py `_fetch_certs`) — so this module needs no google-auth import and the API loads it
with its blueprints (google-auth loads on the first push: `push/gmail.py` `verify`). A GET of the certs URI is
served from memory while fresh — for the answer's `Cache-Control: max-age` (Google serves several hours) but
at most `MAX_AGE_SECONDS` — and refetched when stale or when a token names a key id the
cached set lacks (Google rotates keys; at most one such refetch per `MIN_REFETCH_SECONDS`).
"""
from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

MAX_AGE_SECONDS = 3600.0
MIN_REFETCH_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0


class CertsUnavailable(Exception):
    """The certs URI could not be reached (the push cannot be verified now; Pub/Sub redelivers it)."""


@dataclass(frozen=True)
class _Response:
    """What `google.auth.transport.Response` offers: status, headers, data."""
    status: int
    headers: dict[str, str]
    data: bytes


class CachedCertsRequest:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._cache: dict[str, tuple[float, float, _Response]] = {}     # url → (fetched_at, expires_at, response)
        self._lock = threading.Lock()
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> _Response:
        if method != "GET":
            raise CertsUnavailable("only GET is supported here")
        with self._lock:
            cached = self._cache.get(url)
            now = self.clock()
            if cached is not None and now < cached[1]:
                return cached[2]
            response = self._fetch(url, timeout or TIMEOUT_SECONDS)
            if response.status == 200:
                self._cache[url] = (now, now + _max_age(response.headers), response)
            return response

    def forget_if_older(self, url: str, seconds: float = MIN_REFETCH_SECONDS) -> bool:
        """Drop the cached answer when it is older than `seconds` (an unknown key id); True if dropped."""
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and self.clock() - cached[0] >= seconds:
                del self._cache[url]
                return True
            return False

    def _fetch(self, url: str, timeout: float) -> _Response:
        self.fetches += 1
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                        timeout=timeout) as answer:  # noqa: S310 - a configured https URL
                return _Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, {}, exc.read() or b"")
        except (urllib.error.URLError, OSError) as exc:
            raise CertsUnavailable(f"certs unreachable ({type(exc).__name__})") from None


def _max_age(headers: dict[str, str]) -> float:
    match = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
    return min(float(match.group(1)) if match else MAX_AGE_SECONDS, MAX_AGE_SECONDS)
