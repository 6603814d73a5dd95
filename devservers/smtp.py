"""An SMTP submission server on loopback (aiosmtpd) that checks AUTH and keeps what it receives.

Mailbox verification logs in to SMTP as well as IMAP, and `send()` submits through SMTP, so tests, the local
stack test and the demo need a server that speaks AUTH PLAIN/LOGIN (RFC 4954) with STARTTLS (RFC 3207) or
implicit TLS (RFC 8314). `check(login, password) -> bool` decides logins; a refused login is answered 535
by aiosmtpd itself.
"""
from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devservers.dovecot import free_port


class _QuietLegacyLoginData(logging.Filter):
    """aiosmtpd 1.4 itself sets the deprecated `Session.login_data` after every successful AUTH and logs a
    deprecation warning for it on `mail.log` (its own code path, not ours); the demo's terminal and the test
    logs stay free of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Session.login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietLegacyLoginData())


class _Capture:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.drop_after_data = 0     # the next N messages are taken, then the connection drops before "250"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        if self.drop_after_data > 0:
            self.drop_after_data -= 1
            server.transport.abort()
        return "250 OK"


class SmtpServer:
    def __init__(self, check: Callable[[str, str], bool], *, cert: Path | None = None, key: Path | None = None,
                 implicit_tls: bool = False):
        self._check = check
        self._handler = _Capture()
        options: dict = {}
        if cert is not None and key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            options = {"ssl_context": context} if implicit_tls else {"tls_context": context}
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=free_port(),
                                      authenticator=self._authenticate, auth_require_tls=False, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        return AuthResult(success=bool(password) and self._check(login, password), handled=False)

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def envelopes(self) -> list[tuple[str, list[str], bytes]]:
        return self._handler.envelopes

    def drop_after_data(self, times: int = 1) -> None:
        """The next `times` messages are kept (delivered), but the connection drops after the final "." before
        the server's reply — the client cannot know the message was accepted (RFC 5321 §4.1.1.4)."""
        self._handler.drop_after_data = times

    def start(self) -> "SmtpServer":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> "SmtpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def for_dovecot(dovecot, *, implicit_tls: bool = False) -> SmtpServer:
    """SMTP that accepts the Dovecot users' passwords, with the Dovecot test certificate."""
    tls = dovecot.base / "tls"
    return SmtpServer(lambda login, password: dovecot.passwords.get(login) == password,
                      cert=tls / "cert.pem", key=tls / "key.pem", implicit_tls=implicit_tls)
