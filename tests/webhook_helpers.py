"""Webhook test harness: a real HTTP receiver on loopback, a simulated clock and a simulated delay queue.

`Receiver` is an `http.server` in a thread whose answers are scripted (status codes, a delay, a slow drip of
header lines, or "down" = the port closed). `SimQueue` replaces the SQS send of `notify.deliveries` so delayed
messages become due on the simulated clock; `run_until(t)` feeds each due message to the notifier exactly as
Lambda would.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chalicelib.notify import deliveries, notifier


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float  # the simulated clock when it arrived

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    clock: "SimClock"
    statuses: list[int] = field(default_factory=list)  # consumed one per request; empty -> default_status
    default_status: int = 204
    delay: float = 0.0
    drip: float = 0.0  # > 0: answer "200 OK" but send one header line every `drip` seconds, ten of them
    hits: list[Hit] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    port: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mailbridge?src=test"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.hits.append(Hit(dict(self.headers.items()), body, self.path, receiver.clock.now))
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.drip:
                    try:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for n in range(10):
                            self.wfile.flush()
                            time.sleep(receiver.drip)
                            self.wfile.write(b"X-Drip-%d: x\r\n" % n)
                        self.wfile.write(b"Content-Length: 0\r\n\r\n")
                    except OSError:  # the client gave up
                        pass
                    return
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "22")
                self.end_headers()
                try:
                    self.wfile.write(b"receiver-body-SECRET42")
                except OSError:  # the client does not read bodies and may have closed already
                    pass

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class SimClock:
    def __init__(self, start: float = 1_900_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


class FakeRecord:
    def __init__(self, body: dict, n: int):
        self.body = json.dumps(body)
        self.message_id = f"sim-{n}"


class SimQueue:
    """Delayed messages on the simulated clock; records every DelaySeconds asked for."""

    def __init__(self, clock: SimClock):
        self.clock = clock
        self.pending: list[tuple[float, int, dict]] = []
        self.delays: list[int] = []
        self._n = 0

    def send(self, body: dict, delay: float) -> None:
        seconds = max(0, min(deliveries.MAX_QUEUE_DELAY, int(delay + 0.999)))
        assert seconds <= 900, "SQS DelaySeconds is at most 900"
        self.delays.append(seconds)
        self._n += 1
        self.pending.append((self.clock.now + seconds, self._n, body))

    def run_until(self, until: float) -> int:
        """Deliver every message due by `until` in time order (advancing the clock); returns how many."""
        handled = 0
        while True:
            due = sorted(m for m in self.pending if m[0] <= until)
            if not due:
                break
            message = due[0]
            self.pending.remove(message)
            self.clock.now = max(self.clock.now, message[0])
            notifier.consume(FakeRecord(message[2], message[1]))
            handled += 1
        self.clock.now = max(self.clock.now, until)
        return handled


def documented_verify():
    """`verify_webhook` exactly as docs/api.md ("## Webhooks") shows it: tests verify deliveries with the recipe
    tenants are told to use."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    section = text[text.index("## Webhooks"):]
    code = section[section.index("```python") + len("```python"):]
    namespace: dict = {}
    exec(code[:code.index("```")], namespace)  # noqa: S102 - our own documentation
    return namespace["verify_webhook"]
