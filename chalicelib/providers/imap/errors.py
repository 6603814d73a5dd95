"""Translates imaplib/IMAPClient, smtplib, socket and ssl failures into `ProviderError` codes — once, here.

IMAP response codes (RFC 5530 §3; RFC 3501 §7.1):
- [AUTHENTICATIONFAILED] [AUTHORIZATIONFAILED] [EXPIRED] and any failed LOGIN/AUTHENTICATE → AUTH_REVOKED
- a connection limit or rate limit (Dovecot "Maximum number of connections from user+IP exceeded", Gmail
  "Too many simultaneous connections", the [THROTTLED] code some servers send) → THROTTLED after
  `THROTTLE_RETRY_SECONDS`: waiting is the fix, and a throttled mailbox must not be dead-lettered
- [UNAVAILABLE] [INUSE] [LIMIT] [SERVERBUG], a BYE/abort, timeouts, refused or reset connections → TEMPORARY
- [NONEXISTENT] / "Mailbox doesn't exist" → NOT_FOUND
- [PRIVACYREQUIRED] (server wants TLS), TLS certificate or handshake failures, anything else → PERMANENT

SMTP reply codes (RFC 5321 §4.2.1, RFC 4954 §6): 535/534/530 on AUTH → AUTH_REVOKED; 454 and other 4yz →
TEMPORARY; other 5yz → PERMANENT.

Details are short, name the host, and never carry a secret: the given secrets are redacted from server text.
"""
from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
import socket
import ssl
from typing import Iterable, Iterator

from imapclient import exceptions as imapclient_errors

from chalicelib.providers.base import ErrorCode, ProviderError

_AUTH_CODES = ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED")
_TEMPORARY_CODES = ("UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG")
_NOT_FOUND_CODES = ("NONEXISTENT",)
_NOT_FOUND_TEXT = re.compile(r"mailbox (doesn't|does not) exist|no such (mailbox|folder)|unknown mailbox", re.I)
_THROTTLE_TEXT = re.compile(r"maximum number of connections|too many (simultaneous )?connections|\[THROTTLED\]",
                            re.I)
THROTTLE_RETRY_SECONDS = 60.0
_MAX_DETAIL = 300


def _clean(text: object, secrets: Iterable[str]) -> str:
    value = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    for secret in secrets:
        if secret:
            value = value.replace(secret, "***")
    value = re.sub(r"\s+", " ", value).strip()
    return value[:_MAX_DETAIL]


def _response_code(text: str) -> str | None:
    match = re.search(r"\[([A-Z-]+)", text.upper())
    return match.group(1) if match else None


def translate(exc: BaseException, *, host: str, protocol: str = "IMAP",
              secrets: Iterable[str] = ()) -> ProviderError:
    """The ProviderError for `exc` (a ProviderError is returned unchanged)."""
    if isinstance(exc, ProviderError):
        return exc
    secrets = tuple(secrets)
    where = f"{protocol} {host}"
    text = _clean(exc, secrets)

    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or "certificate verification failed"
        return ProviderError(ErrorCode.PERMANENT, f"{where}: TLS certificate not trusted ({reason})")
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return ProviderError(ErrorCode.PERMANENT, f"{where}: TLS handshake failed ({reason}); check port and "
                                                  f"security setting")
    if isinstance(exc, smtplib.SMTPException):
        return _translate_smtp(exc, where, text)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: timed out")
    if isinstance(exc, ConnectionRefusedError):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: connection refused")
    if isinstance(exc, socket.gaierror):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: host name does not resolve")
    if isinstance(exc, (ConnectionError, EOFError)):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: connection lost ({type(exc).__name__})")
    if isinstance(exc, (imaplib.IMAP4.error, imapclient_errors.IMAPClientError)) and _THROTTLE_TEXT.search(text):
        return ProviderError(ErrorCode.THROTTLED, f"{where}: {text}", retry_after=THROTTLE_RETRY_SECONDS)
    if isinstance(exc, imapclient_errors.LoginError):
        code = _response_code(text)
        if code in _TEMPORARY_CODES:
            return ProviderError(ErrorCode.TEMPORARY, f"{where}: login unavailable: {text}")
        if code == "PRIVACYREQUIRED" or "plaintext authentication disallowed" in text.lower():
            return ProviderError(ErrorCode.PERMANENT, f"{where}: server requires TLS before login")
        return ProviderError(ErrorCode.AUTH_REVOKED, f"{where}: login refused: {text}")
    if isinstance(exc, (imaplib.IMAP4.abort, imapclient_errors.IMAPClientAbortError)):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: connection aborted: {text}")
    if isinstance(exc, (imaplib.IMAP4.error, imapclient_errors.IMAPClientError)):
        code = _response_code(text)
        if code in _AUTH_CODES:
            return ProviderError(ErrorCode.AUTH_REVOKED, f"{where}: {text}")
        if code in _TEMPORARY_CODES:
            return ProviderError(ErrorCode.TEMPORARY, f"{where}: {text}")
        if code in _NOT_FOUND_CODES or _NOT_FOUND_TEXT.search(text):
            return ProviderError(ErrorCode.NOT_FOUND, f"{where}: {text}")
        return ProviderError(ErrorCode.PERMANENT, f"{where}: {text}")
    if isinstance(exc, OSError):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: network error ({type(exc).__name__})")
    return ProviderError(ErrorCode.PERMANENT, f"{where}: unexpected {type(exc).__name__}")


def _translate_smtp(exc: smtplib.SMTPException, where: str, text: str) -> ProviderError:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: server disconnected")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ProviderError(ErrorCode.PERMANENT, f"{where}: not supported by the server: {text}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        if codes and all(400 <= c < 500 for c in codes):
            return ProviderError(ErrorCode.TEMPORARY, f"{where}: recipients deferred ({sorted(set(codes))})")
        return ProviderError(ErrorCode.PERMANENT, f"{where}: recipients refused ({sorted(set(codes))})")
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPAuthenticationError) and code != 454:
        return ProviderError(ErrorCode.AUTH_REVOKED, f"{where}: login refused: {text}")
    if isinstance(code, int) and 400 <= code < 500:
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: {text}")
    if isinstance(exc, smtplib.SMTPConnectError):
        return ProviderError(ErrorCode.TEMPORARY, f"{where}: connect failed: {text}")
    return ProviderError(ErrorCode.PERMANENT, f"{where}: {text}")


@contextlib.contextmanager
def translated(*, host: str, protocol: str = "IMAP", secrets: Iterable[str] = ()) -> Iterator[None]:
    """Run a block; any failure leaves it as a ProviderError (the original is not chained: it may hold
    server text with secrets, and nothing outside providers/ should see IMAP exceptions)."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is translated, once, here
        raise translate(exc, host=host, protocol=protocol, secrets=secrets) from None
