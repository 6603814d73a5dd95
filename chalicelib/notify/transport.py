"""One webhook POST to a tenant-supplied URL, through the SSRF guard, with a hard timeout and no redirects.

- The URL must be `https` (plain `http` only in the local and test stages), with a host, without userinfo
  (credentials in a URL would be stored and logged in clear) or fragment.
- The host is vetted by `security.ssrf.resolve_and_vet` when the URL is saved AND again before every attempt
  (DNS may have changed since); the connection goes to the vetted address while TLS is verified against the
  URL's host name (SNI and certificate check via urllib3's `server_hostname`/`assert_hostname`), and the
  `Host` header names the URL's host — a second resolution cannot swap in an internal address.
- `TIMEOUT_SECONDS` caps connect + response as a wall clock. urllib3's `Timeout(total=...)` alone does not:
  it bounds each socket read, so a receiver dripping a header byte every few seconds could hold an attempt
  (and the notifier Lambda) far longer. A timer shuts the connection's socket down at the deadline (`_Deadline`).
  Redirects are not followed (a 3xx is a failed attempt); urllib3's own retries are off (the delivery schedule
  retries).
- The receiver's body is never read or stored: the outcome keeps the status code and a short status line.
- urllib3 2.x derives `NewConnectionError` (refused, unreachable, DNS) from `ConnectTimeoutError`, so it is
  told apart first: a receiver that is down reads "connection failed" in the delivery log, not "timeout".
"""
from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, SSLError, TimeoutError as Urllib3Timeout

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.security.ssrf import UnreachableHost, resolve_and_vet

TIMEOUT_SECONDS = 10.0
CA_CERTS: str | None = None  # a CA bundle file; None = the system trust store (tests point it at their CA)
MAX_URL_LENGTH = 2048
LOCAL_STAGES = frozenset({"local", "test"})
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class InvalidWebhookUrl(ValueError):
    """The URL is malformed, not https, or its host is refused by the SSRF guard (`str()` is safe to show)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path + query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    line: str  # "200 OK", "timeout", "connection failed", ... (never the receiver's body)
    final: bool = False  # no point retrying (e.g. the webhook was removed)


def parse_url(url: str) -> Target:
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"The URL must be 1 to {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidWebhookUrl("The URL is not valid.") from None
    allowed = {"https", "http"} if get_settings().stage in LOCAL_STAGES else {"https"}
    if parts.scheme not in allowed:
        raise InvalidWebhookUrl("The URL must use https.")
    if not parts.hostname:
        raise InvalidWebhookUrl("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("The URL must not contain credentials.")
    if parts.fragment:
        raise InvalidWebhookUrl("The URL must not contain a fragment.")
    if any(ch.isspace() for ch in url):
        raise InvalidWebhookUrl("The URL must not contain whitespace.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def vet_url(url: str) -> tuple[Target, str]:
    """The parsed URL and the address to dial; raises `InvalidWebhookUrl` (SSRF refusals carry one message)."""
    target = parse_url(url)
    try:
        return target, resolve_and_vet(target.host, target.port)
    except UnreachableHost as exc:
        logger.warning("webhook host refused", extra={"reason": exc.reason})
        raise InvalidWebhookUrl("The URL's host is not reachable from this service.") from None


class _Deadline:
    """Shuts down every connection `pool` opens once `seconds` have passed (the read then fails at once)."""

    def __init__(self, pool: urllib3.HTTPConnectionPool, seconds: float):
        self.expired = False
        self._opened: list = []
        self._lock = threading.Lock()
        opened, lock = self._opened, self._lock

        class Watched(pool.ConnectionCls):
            def connect(self):
                super().connect()
                with lock:
                    opened.append(self)

        pool.ConnectionCls = Watched
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._opened:
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def _pool(target: Target, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    common = {"port": target.port, "timeout": urllib3.Timeout(total=timeout), "retries": False, "maxsize": 1}
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(address, server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=CA_CERTS, **common)
    return urllib3.HTTPConnectionPool(address, **common)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float | None = None) -> Outcome:
    """POST `body` once; 2xx is success, anything else (including 3xx and no answer) a failed attempt."""
    try:
        target, address = vet_url(url)
    except InvalidWebhookUrl:
        return Outcome(False, None, "refused: host not allowed")
    seconds = TIMEOUT_SECONDS if timeout is None else timeout
    pool = _pool(target, address, seconds)
    deadline = _Deadline(pool, seconds)
    try:
        with deadline:
            response = pool.urlopen("POST", target.path, body=body,
                                    headers={**headers, "Host": target.host_header}, redirect=False,
                                    retries=False, preload_content=False, assert_same_host=False)
            try:
                status = int(response.status)
                reason = _PRINTABLE.sub("", str(response.reason or ""))[:60]
            finally:
                response.release_conn()
    except NewConnectionError:
        return Outcome(False, None, "connection failed")
    except Urllib3Timeout:
        return Outcome(False, None, "timeout")
    except SSLError:
        return Outcome(False, None, "timeout" if deadline.expired else "TLS error")
    except HTTPError as exc:
        cause = getattr(exc, "reason", None)
        if deadline.expired or (isinstance(cause, Urllib3Timeout) and not isinstance(cause, NewConnectionError)):
            return Outcome(False, None, "timeout")
        return Outcome(False, None, "connection failed")
    finally:
        pool.close()
    if deadline.expired:       # the answer was cut off at the deadline (http.client takes EOF as the headers' end)
        return Outcome(False, None, "timeout")
    line = f"{status} {reason}".strip()
    if 300 <= status < 400:
        line = f"{line} (redirect not followed)"
    return Outcome(200 <= status < 300, status, line[:100])
