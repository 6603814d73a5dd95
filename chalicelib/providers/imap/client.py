"""Thin, read-only IMAP client over IMAPClient: connect, log in, LIST, STATUS, EXAMINE, UID SEARCH, UID FETCH.

- Dials `ConnectionSettings.address` (the SSRF-vetted IP) when given, but TLS uses `host` for SNI and the
  certificate hostname check (implicit TLS, RFC 8314 §3.2; STARTTLS, RFC 3501 §6.2.1). `security="none"` is
  plain TCP (allowed only where the stage permits; the caller checks).
- `login_method`: "plain" = AUTHENTICATE PLAIN (RFC 4616) when the server advertises AUTH=PLAIN, else LOGIN;
  "login" = the LOGIN command (RFC 3501 §6.2.3).
- Never writes: folders are opened with EXAMINE (read-only, RFC 3501 §6.3.2) and bodies are fetched with
  BODY.PEEK[] so \\Seen is never set.
- Every command after login counts one round trip (`round_trips`, `commands`), so callers and tests can
  prove an idle sync is one STATUS per folder.
- IMAPClient 4.x: fetch/search take UID lists or explicit "a:b" criteria, never `fetch('1:*')`.
All failures leave this module as `ProviderError` (errors.translated).
"""
from __future__ import annotations

import functools
import imaplib
import os
import re
import socket
import ssl
from datetime import date
from typing import Any, Sequence

from imapclient import IMAPClient
from imapclient.imapclient import SocketTimeout
from imapclient.response_parser import parse_fetch_response

from chalicelib.providers.base import ConnectionSettings
from chalicelib.providers.imap.errors import translated


class _DialedTLS(imaplib.IMAP4):
    """Implicit TLS to `address`, verified against `hostname` (SNI + certificate name)."""

    def __init__(self, address: str, port: int, hostname: str, context: ssl.SSLContext, timeout: float | None):
        self._hostname, self._context = hostname, context
        super().__init__(address, port, timeout)

    def _create_socket(self, timeout=None):
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return self._context.wrap_socket(sock, server_hostname=self._hostname)


class _DialingIMAPClient(IMAPClient):
    """IMAPClient that dials an address but does TLS (implicit or STARTTLS) against the configured host."""

    def __init__(self, address: str, port: int, *, hostname: str, use_ssl: bool, context: ssl.SSLContext,
                 timeout: float):
        self._hostname = hostname
        super().__init__(address, port=port, ssl=use_ssl, ssl_context=context,
                         timeout=SocketTimeout(connect=timeout, read=timeout))
        self.host = hostname  # IMAPClient.starttls() wraps the socket with server_hostname=self.host

    def _create_IMAP4(self):
        if self.ssl:
            return _DialedTLS(self.host, self.port, self._hostname, self.ssl_context, self._timeout.connect)
        return super()._create_IMAP4()


def default_ssl_context() -> ssl.SSLContext:
    """System trust store (honours SSL_CERT_FILE / SSL_CERT_DIR), TLS >= 1.2, hostname checking on.

    One context per process and trust-store setting (SSL_CERT_FILE's path and modification time, SSL_CERT_DIR):
    loading the trust store costs ~0.2 s of CPU, which was most of an idle IMAP sync's compute. A context is safe
    to share between connections and threads (it is not changed after creation;
    https://docs.python.org/3/library/ssl.html#ssl-contexts)."""
    cert_file = os.environ.get("SSL_CERT_FILE")
    try:
        changed = os.stat(cert_file).st_mtime_ns if cert_file else None
    except OSError:
        changed = None
    return _default_ssl_context(cert_file, changed, os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _default_ssl_context(cert_file: str | None, changed: int | None, cert_dir: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ImapClient:
    def __init__(self, settings: ConnectionSettings, password: str, *, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None):
        self.settings, self._password, self.timeout = settings, password, timeout
        self.ssl_context = ssl_context or default_ssl_context()
        self._conn: IMAPClient | None = None
        self._capabilities: frozenset[str] = frozenset()
        self.round_trips = 0
        self.commands: list[str] = []
        self.selected: str | None = None

    def _guard(self):
        return translated(host=self.settings.host, protocol="IMAP", secrets=(self._password,))

    def _count(self, command: str) -> None:
        self.round_trips += 1
        self.commands.append(command)

    # ---- session --------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connect(self) -> "ImapClient":
        """Connect, secure and log in (not counted as round trips of the sync)."""
        if self._conn is not None:
            return self
        s = self.settings
        with self._guard():
            conn = _DialingIMAPClient(s.address or s.host, s.port, hostname=s.host, use_ssl=s.security == "tls",
                                      context=self.ssl_context, timeout=self.timeout)
            try:
                if s.security == "starttls":
                    conn.starttls(self.ssl_context)
                if s.login_method == "plain" and conn.has_capability("AUTH=PLAIN"):
                    conn.plain_login(s.username, self._password)
                else:
                    conn.login(s.username, self._password)
                self._capabilities = frozenset(c.decode().upper() if isinstance(c, bytes) else str(c).upper()
                                               for c in conn.capabilities())
                if "CONDSTORE" in self._capabilities and "ENABLE" in self._capabilities:
                    conn.enable("CONDSTORE")  # RFC 7162 §3.1: EXAMINE then reports HIGHESTMODSEQ
            except BaseException as exc:
                bye = _untagged_bye(conn)
                _close_quietly(conn)
                if bye and isinstance(exc, Exception):
                    # The server said why in an untagged BYE before closing (RFC 3501 §7.1.5), e.g. Dovecot's
                    # "Maximum number of connections from user+IP exceeded": keep that, not "socket error: EOF".
                    raise imaplib.IMAP4.abort(f"BYE {bye}") from None
                raise
        self._conn = conn
        return self

    def close(self) -> None:
        conn, self._conn, self.selected = self._conn, None, None
        if conn is not None:
            try:
                conn.logout()
            except Exception:  # noqa: BLE001 - the connection is being discarded anyway
                _close_quietly(conn)

    def has(self, capability: str) -> bool:
        return capability.upper() in self._capabilities

    @property
    def conn(self) -> IMAPClient:
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    # ---- read-only commands (each one round trip) ----------------------------------------------------------

    def list_folders(self) -> list[tuple[tuple[str, ...], str]]:
        """[(flags, name)] for every folder (flags include RFC 6154 special-use ones like \\Sent)."""
        conn = self.conn
        with self._guard():
            self._count("LIST")
            rows = conn.list_folders()
        return [(tuple(_text(f) for f in flags), name) for flags, _sep, name in rows]

    def status(self, mailbox: str) -> dict[str, int]:
        """STATUS (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ]) — HIGHESTMODSEQ only with CONDSTORE.

        STATUS of the selected mailbox may answer from the session's stale view (RFC 3501 §6.3.10 says not to
        use it that way; Dovecot does answer stale), so a selected mailbox is unselected first."""
        conn = self.conn
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if self.has("CONDSTORE") else [])
        if self.selected is not None and self.selected == mailbox:
            self.unselect()
        with self._guard():
            self._count("STATUS")
            result = conn.folder_status(mailbox, items)
        return {_text(k).upper(): int(v) for k, v in result.items()}

    def examine(self, mailbox: str) -> dict[str, int]:
        """EXAMINE (read-only SELECT): {"UIDVALIDITY", "UIDNEXT", "EXISTS", "HIGHESTMODSEQ"?}."""
        conn = self.conn
        with self._guard():
            self._count("EXAMINE")
            result = conn.select_folder(mailbox, readonly=True)
        self.selected = mailbox
        out: dict[str, int] = {}
        for key, value in result.items():
            name = _text(key).upper()
            if name in ("UIDVALIDITY", "UIDNEXT", "EXISTS", "HIGHESTMODSEQ"):
                out[name] = int(value if not isinstance(value, (list, tuple)) else value[0])
        return out

    def unselect(self) -> None:
        """UNSELECT (RFC 3691) or, without it, CLOSE — which never expunges an EXAMINEd mailbox (RFC 3501
        §6.4.2)."""
        conn = self.conn
        with self._guard():
            self._count("UNSELECT")
            if self.has("UNSELECT"):
                conn.unselect_folder()
            else:
                conn.close_folder()
        self.selected = None

    def search_uid_range(self, first: int, last: int | None = None, *, since: date | None = None) -> list[int]:
        """UID SEARCH UID first:last|* [SINCE date], sorted. `n:*` always matches the highest UID (RFC 3501
        §6.4.8), so callers filter to UIDs >= first themselves."""
        conn = self.conn
        criteria: list[Any] = ["UID", f"{first}:{'*' if last is None else last}"]
        if since is not None:
            criteria += ["SINCE", since]
        with self._guard():
            self._count("UID SEARCH")
            return sorted(int(u) for u in conn.search(criteria))

    def search_since(self, since: date) -> list[int]:
        conn = self.conn
        with self._guard():
            self._count("UID SEARCH")
            return sorted(int(u) for u in conn.search(["SINCE", since]))

    def count_uid_range(self, first: int, last: int) -> int:
        """How many messages have UID in first:last — ESEARCH `RETURN (COUNT)` (RFC 4731) when available,
        else a plain UID SEARCH."""
        if not self.has("ESEARCH"):
            return len(self.search_uid_range(first, last))
        conn = self.conn
        with self._guard():
            self._count("UID SEARCH RETURN (COUNT)")
            data = conn._raw_command_untagged(b"SEARCH", [b"RETURN", b"(COUNT)", b"UID", f"{first}:{last}".encode()],
                                              response_name="ESEARCH", uid=True)
        for line in data or ():
            match = re.search(rb"COUNT\s+(\d+)", line if isinstance(line, bytes) else str(line).encode(), re.I)
            if match:
                return int(match.group(1))
        return 0

    def fetch(self, uids: Sequence[int], items: Sequence[str]) -> dict[int, dict[bytes, Any]]:
        """UID FETCH of explicit UIDs (never ranges). Use BODY.PEEK[] for bodies."""
        if not uids:
            return {}
        conn = self.conn
        with self._guard():
            self._count("UID FETCH")
            return {int(k): v for k, v in conn.fetch(list(uids), list(items)).items()}

    def changed_flags(self, first: int, last: int, modseq: int) -> dict[int, tuple[str, ...]]:
        """`UID FETCH first:last (UID FLAGS) (CHANGEDSINCE modseq)` (RFC 7162 §3.1.4.1) on the selected
        mailbox: {uid: flags} of the messages whose flags changed after `modseq`. Needs CONDSTORE."""
        conn = self.conn
        with self._guard():
            self._count("UID FETCH CHANGEDSINCE")
            # IMAPClient.fetch() takes explicit UIDs only (it filters its answer by them), so a range goes out as
            # the same command built by hand and its answer through IMAPClient's own FETCH parser.
            imap = conn._imap
            tag = imap._command("UID", "FETCH", f"{first}:{last}", "(UID FLAGS)", f"(CHANGEDSINCE {modseq})")
            typ, data = imap._command_complete("FETCH", tag)
            conn._checkok("fetch", typ, data)
            typ, data = imap._untagged_response(typ, data, "FETCH")
            answer = parse_fetch_response(data, conn.normalise_times, True)
        return {int(uid): tuple(_text(flag) for flag in fields.get(b"FLAGS", ())) for uid, fields in answer.items()
                if isinstance(uid, int) and first <= uid <= last}

    # ---- the one write: the sent copy (outbox) ---------------------------------------------------------------

    def append(self, mailbox: str, raw: bytes, *, flags: Sequence[str] = ("\\Seen",)) -> None:
        """APPEND `raw` to `mailbox` (RFC 3501 §6.3.11) — used only to file a message this service sent into
        the Sent folder; nothing else is ever written."""
        conn = self.conn
        with self._guard():
            self._count("APPEND")
            conn.append(mailbox, raw, flags=list(flags))

    def search_message_id(self, mailbox: str, rfc_message_id: str) -> bool:
        """True when `mailbox` (EXAMINEd) holds a message whose Message-ID header contains `rfc_message_id`
        (UID SEARCH HEADER, RFC 3501 §6.4.4: substring match, so the id without brackets)."""
        self.examine(mailbox)
        conn = self.conn
        with self._guard():
            self._count("UID SEARCH")
            return bool(conn.search(["HEADER", "Message-ID", rfc_message_id]))


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _untagged_bye(conn) -> str | None:
    responses = getattr(getattr(conn, "_imap", None), "untagged_responses", None) or {}
    values = responses.get("BYE") or []
    text = values[-1] if values else None
    return text.decode(errors="replace") if isinstance(text, bytes) else text


def _close_quietly(conn: IMAPClient) -> None:
    try:
        conn.shutdown()
    except Exception:  # noqa: BLE001
        pass
