"""`python -m devservers.webhook_receiver` (`make demo-webhook`): a tenant's webhook receiver on loopback.

For the README's walk: it checks every delivery with the verification recipe of docs/api.md ("Webhooks":
`Webhook-Signature` = `v1=` + hex HMAC-SHA256(secret, "<Webhook-Timestamp>.<raw body>"), timestamps more
than 5 minutes from this clock refused), answers 204 to a valid delivery and 401 to any other, notes a
`Webhook-Id` it already has (retries and replays carry the same id: receivers deduplicate on it), and prints
one line per delivery. The secret is the one `PUT /v1/webhook` showed once: `--secret` or
`$MAILBRIDGE_WEBHOOK_SECRET`. Stop with Ctrl-C.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify_webhook(secret: str, headers: dict, body: bytes, tolerance: int = 300) -> bool:
    """The recipe of docs/api.md, "Webhooks" (the same code; tests hold the two to the same answers)."""
    timestamp = headers["Webhook-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, sig) for sig in headers["Webhook-Signature"].split())


class WebhookReceiver:
    """An HTTP server in a thread; `seen` holds the event ids of the valid deliveries, in arrival order."""

    def __init__(self, secret: str, port: int = 0, *, out=sys.stdout):
        self.secret, self.out = secret, out
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.receive({k: v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # one line per delivery is printed by `receive`
                pass

        return Handler

    def receive(self, headers: dict, body: bytes) -> int:
        """The status to answer: 204 for a valid delivery (also a repeated one), 401 otherwise."""
        try:
            valid = verify_webhook(self.secret, headers, body)
        except (KeyError, ValueError):
            valid = False
        if not valid:
            self._print(f"{headers.get('Webhook-Id', '?')}  signature INVALID or outside the window -> 401")
            return 401
        event = json.loads(body)
        with self._lock:
            again = event["id"] in self.seen
            if not again:
                self.seen.append(event["id"])
        note = "  (again: already had it)" if again else ""
        self._print(f"{event['id']}  {event['type']:<30} signature ok  created {event['created_at']}  "
                    f"{json.dumps(event.get('data', {}), ensure_ascii=False)[:160]}{note}")
        return 204

    def _print(self, line: str) -> None:
        print(time.strftime("%H:%M:%S ") + line, file=self.out, flush=True)

    def start(self) -> "WebhookReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservers.webhook_receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000, help="port on 127.0.0.1 (default 9000)")
    parser.add_argument("--secret", default=os.environ.get("MAILBRIDGE_WEBHOOK_SECRET"),
                        help="the whsec_… secret PUT /v1/webhook showed (default $MAILBRIDGE_WEBHOOK_SECRET)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give the webhook's signing secret: --secret whsec_… (or $MAILBRIDGE_WEBHOOK_SECRET)")
    try:
        receiver = WebhookReceiver(args.secret, args.port).start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror} (another receiver still running? --port)",
              file=sys.stderr)
        return 1
    print(f"webhook receiver on http://127.0.0.1:{receiver.port}/ (any path); verifying with the secret given. "
          "Ctrl-C stops it.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    receiver.stop()
    print(f"received {len(receiver.seen)} distinct events", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
