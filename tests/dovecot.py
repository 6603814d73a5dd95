"""pytest plugin (`pytest_plugins = ["tests.dovecot"]`): a session-scoped real Dovecot IMAP server.

The server itself (`DovecotServer`: config, users, IMAP helpers) lives in `devservers/dovecot.py` so the
benchmarks run the very same server; see /work/briefs/dovecot-ready.md or that module for the helpers.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from devservers.dovecot import DovecotServer, free_port, make_self_signed  # noqa: F401  (re-exported)


# ---- pytest fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A running Dovecot shared by the session; call `dovecot.new_user()` in each test for isolation."""
    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the Dovecot log to failing tests that used the server."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "dovecot" in getattr(item, "fixturenames", ()):
        server = item.funcargs.get("dovecot")
        if isinstance(server, DovecotServer):
            report.sections.append(("dovecot log (tail)", "\n".join(server.log().splitlines()[-40:])))


@pytest.fixture
def imap_user(dovecot) -> tuple[str, str]:
    """A fresh (username, password) on the session Dovecot."""
    return dovecot.new_user()
