"""Google's public keys for OIDC tokens, cached: the push handler must answer fast and must not fetch the keys
for every push.

`CachedCertsRequest` is a `google.auth.transport.Request` for `google.oauth2.id_token.verify_token`: a GET of
the certs URI is served from memory while fresh — for the answer's `Cache-Control: max-age` (Google serves
several hours) but at most `MAX_AGE_SECONDS` — and refetched when stale or when a token names a key id the
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

from google.auth import exceptions, transport

MAX_AGE_SECONDS = 3600.0
MIN_REFETCH_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0


@dataclass
class _Response(transport.Response):
    _status: int
    _headers: dict[str, str]
    _data: bytes

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class CachedCertsRequest(transport.Request):
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._cache: dict[str, tuple[float, float, _Response]] = {}     # url → (fetched_at, expires_at, response)
        self._lock = threading.Lock()
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> _Response:
        if method != "GET":
            raise exceptions.TransportError("only GET is supported here")
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
            raise exceptions.TransportError(f"certs unreachable ({type(exc).__name__})") from None


def _max_age(headers: dict[str, str]) -> float:
    match = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
    return min(float(match.group(1)) if match else MAX_AGE_SECONDS, MAX_AGE_SECONDS)
