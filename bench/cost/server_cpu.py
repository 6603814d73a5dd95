"""The CPU the fake providers spend in this process, so the cost model can leave it out of the worker's time.

The fake Google and the fake Microsoft (`devservers/`) are `ThreadingHTTPServer`s running in the bench's own
process: their request handling — and for the fake Microsoft, the server side of every TLS handshake — would
otherwise be billed as Lambda time, which in production is Google's and Microsoft's work. Their CPU is read per
thread (Linux thread CPU clocks, `time.pthread_getcpuclockid`): the long-lived `serve_forever` threads (named
after the fake: the TLS handshake runs in their `accept`), and each request thread's body
(`socketserver.ThreadingMixIn.process_request_thread`, wrapped here while `measuring()` is active, before the
fakes start). Dovecot runs in a process of its own and needs none of this.
"""
from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from typing import Iterator

SERVER_THREADS = ("fake-google", "fake-microsoft")

_lock = threading.Lock()
_request_cpu = 0.0


def _counted(original):
    def process_request_thread(self, request, client_address):
        global _request_cpu
        started = time.thread_time()
        try:
            return original(self, request, client_address)
        finally:
            with _lock:
                _request_cpu += time.thread_time() - started
    return process_request_thread


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Count the fakes' request threads' CPU while active (start the fakes inside it)."""
    original = socketserver.ThreadingMixIn.process_request_thread
    socketserver.ThreadingMixIn.process_request_thread = _counted(original)
    try:
        yield
    finally:
        socketserver.ThreadingMixIn.process_request_thread = original


def spent() -> float:
    """CPU seconds the fakes have used so far in this process (their server threads and counted requests)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name in SERVER_THREADS and thread.ident is not None:
            with contextlib.suppress(OSError, ProcessLookupError):
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    with _lock:
        return total + _request_cpu
