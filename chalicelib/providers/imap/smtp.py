"""SMTP submission for IMAP mailboxes (RFC 6409) with smtplib.

`security`: "tls" = implicit TLS (RFC 8314, port 465), "starttls" = STARTTLS upgrade (RFC 3207, port 587),
"none" = plain TCP. Like the IMAP client it dials `ConnectionSettings.address` when given and verifies TLS
against `host` (SNI + hostname). `login_method` "plain" = AUTH PLAIN when offered (else smtplib's choice),
"login" = AUTH LOGIN (RFC 4954). The message is submitted as given; the provider message id is its
Message-ID header (SMTP returns no stable id).
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Sequence

from chalicelib.providers.base import ConnectionSettings, ErrorCode, ProviderError
from chalicelib.providers.imap.errors import translate, translated


class _FinalDotMixin:
    """Notes when the message text with its final "." has been written (smtplib's `data()` sends the whole
    quoted text ending in CRLF "." CRLF in one `send`), so a failure after it is told from one before it."""

    final_dot_sent = False

    def send(self, s):
        super().send(s)
        if isinstance(s, (bytes, bytearray)) and s.endswith(b"\r\n.\r\n"):
            self.final_dot_sent = True


class _DialingSMTP(_FinalDotMixin, smtplib.SMTP):
    """smtplib dials `self._host` for TLS names; this dials `address` instead, keeping `_host` for TLS."""

    def __init__(self, address: str, *, local_hostname: str, timeout: float):
        self._address = address
        super().__init__(local_hostname=local_hostname, timeout=timeout)

    def _get_socket(self, host, port, timeout):
        return socket.create_connection((self._address, port), timeout)


class _DialingSMTPSSL(_FinalDotMixin, smtplib.SMTP_SSL):
    def __init__(self, address: str, *, local_hostname: str, timeout: float, context: ssl.SSLContext):
        self._address = address
        super().__init__(local_hostname=local_hostname, timeout=timeout, context=context)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((self._address, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._host)


class SmtpSession:
    def __init__(self, settings: ConnectionSettings, password: str, *, ehlo_name: str, timeout: float,
                 ssl_context: ssl.SSLContext):
        self.settings, self._password = settings, password
        self.ehlo_name, self.timeout, self.ssl_context = ehlo_name, timeout, ssl_context

    def _guard(self):
        return translated(host=self.settings.host, protocol="SMTP", secrets=(self._password,))

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        address = s.address or s.host
        if s.security == "tls":
            smtp: smtplib.SMTP = _DialingSMTPSSL(address, local_hostname=self.ehlo_name, timeout=self.timeout,
                                                 context=self.ssl_context)
        else:
            smtp = _DialingSMTP(address, local_hostname=self.ehlo_name, timeout=self.timeout)
        smtp._host = s.host  # smtplib verifies TLS (SNI, hostname) against _host, which connect() does not set
        try:
            smtp.connect(s.host, s.port)
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            self._login(smtp)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        if not smtp.has_extn("auth"):
            raise ProviderError(ErrorCode.PERMANENT, f"SMTP {self.settings.host}: server offers no AUTH"
                                                     + (" (try STARTTLS)" if self.settings.security == "none" else ""))
        smtp.user, smtp.password = self.settings.username, self._password
        offered = (smtp.esmtp_features.get("auth") or "").upper().split()
        if self.settings.login_method == "login":
            smtp.auth("LOGIN", smtp.auth_login)
        elif "PLAIN" in offered:
            smtp.auth("PLAIN", smtp.auth_plain)
        else:
            smtp.login(self.settings.username, self._password)

    def check_login(self) -> None:
        with self._guard():
            smtp = self._open()
            _quit(smtp)

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> str:
        """Submits `raw`; returns its Message-ID header ("" when it has none).

        A failure after the final "." was written but before the server's reply to it (a dropped connection,
        a timeout) leaves the outcome unknown: the server may have taken responsibility for the message
        (RFC 5321 §4.1.1.4, §6.1; RFC 1047 on the duplicates a resend then makes). It is raised with
        `maybe_sent`; a reply to the final "." (SMTPDataError, 4yz/5yz) is a definite refusal."""
        if not recipients:
            raise ProviderError(ErrorCode.PERMANENT, "no recipients")
        with self._guard():
            smtp = self._open()
            try:
                smtp.sendmail(sender, list(recipients), raw)
            except smtplib.SMTPResponseException:
                raise
            except (smtplib.SMTPException, OSError) as exc:
                if not smtp.final_dot_sent:
                    raise
                error = translate(exc, host=self.settings.host, protocol="SMTP", secrets=(self._password,))
                raise ProviderError(error.code, f"{error.detail} after the message was transmitted (no reply to "
                                                "the final '.'; it may have been accepted)",
                                    maybe_sent=True) from None
            finally:
                _quit(smtp)
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        return (headers.get("Message-ID") or "").strip()


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
