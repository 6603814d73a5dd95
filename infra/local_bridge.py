"""The local stack's second process reaches the emulator of the first: botocore requests over a local pipe.

The local stack runs the Lambda functions (worker, notifier, checker, scheduler, ...) in a process of their own
(`infra/local_functions.py`) so they and the emulator use two cores instead of sharing one GIL — as in the
cloud, where each function is its own Lambda and DynamoDB is a service. Their AWS calls still reach the ONE
emulator in the main process, without HTTP: botocore's `before-send` event lets a handler answer a request
instead of sending it (botocore "Events" reference; moto's in-process mock answers it the same way), so

- the functions' process registers `forward` for every botocore session (`install_client`): it ships the
  signed request (method, URL, headers, body) over a `multiprocessing.connection` and returns the answer as
  the `AWSResponse` botocore would have read from the network;
- the main process serves each connection in a thread (`serve`) and hands the request to moto's own
  dispatcher (`moto.core.models.botocore_stubber.process_request`, what its in-process mock calls), after
  letting the API's requests in flight go first (`local_api.wait_for_requests`).

The channel is a Unix socket in the data dir, authenticated with a random key both processes share
(`multiprocessing.connection`'s HMAC challenge): it carries pickles, so only the stack's own child may speak on
it. Emulator only; never imported by the service.
"""
from __future__ import annotations

import io
import os
import threading
from multiprocessing.connection import Client, Connection, Listener
from typing import Any, Callable

AUTHKEY_ENV = "MAILBRIDGE_LOCAL_BRIDGE_KEY"
ADDRESS_ENV = "MAILBRIDGE_LOCAL_BRIDGE"
READY_ENV = "MAILBRIDGE_LOCAL_FUNCTIONS_READY"      # a file the functions' process creates once it runs


class _RawBody(io.BytesIO):
    """The `raw` of an `AWSResponse` (botocore reads it with `stream()`, as moto's `MockRawResponse`)."""

    def stream(self, **_: Any):
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    data = body.read()           # a file-like body (botocore may wrap S3 payloads); rewound for retries
    if hasattr(body, "seek"):
        body.seek(0)
    return data if isinstance(data, bytes) else data.encode("utf-8")


# -- the main process ------------------------------------------------------------------------------------------

def serve(address: str, authkey: bytes, *, before_each: Callable[[], None] = lambda: None,
          log: Callable[[str], None] = print) -> Listener:
    """Answer the functions' process's requests with moto, one thread per connection (each of its threads holds
    one). `before_each` runs before every request (the API-first gate). Returns the listener (close it to stop
    accepting)."""
    from moto.core.models import botocore_stubber
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.compat import HTTPHeaders

    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    os.chmod(address, 0o600)

    def answer(connection: Connection) -> None:
        with connection:
            while True:
                try:
                    method, url, headers, body = connection.recv()
                except (EOFError, OSError):
                    return
                before_each()
                prepared = AWSPreparedRequest(method=method, url=url, headers=HTTPHeaders(), body=body,
                                              stream_output=False)
                for name, value in headers:
                    prepared.headers[name] = value
                try:
                    found = botocore_stubber.process_request(prepared)
                    reply = ("ok", found) if found is not None else ("error", f"no emulated service for {url}")
                except Exception as exc:  # noqa: BLE001 - the caller sees it as a failed request
                    reply = ("error", f"{type(exc).__name__}: {exc}")
                try:
                    if reply[0] == "ok":
                        status, response_headers, response_body = reply[1]
                        connection.send(("ok", (status, dict(response_headers), _body_bytes(response_body))))
                    else:
                        connection.send(reply)
                except (EOFError, OSError):
                    return

    def accept() -> None:
        while True:
            try:
                connection = listener.accept()
            except (OSError, EOFError):
                return                      # closed
            except Exception as exc:  # noqa: BLE001 - a failed handshake (wrong key) must not stop the loop
                log(f"bridge: refused a connection ({type(exc).__name__})")
                continue
            threading.Thread(target=answer, args=(connection,), name="bridge", daemon=True).start()

    threading.Thread(target=accept, name="bridge-accept", daemon=True).start()
    return listener


# -- the functions' process ------------------------------------------------------------------------------------

class BridgeError(ConnectionError):
    """The emulator could not answer (it is stopping, or the request matched no emulated service)."""


_local = threading.local()


def install_client(address: str, authkey: bytes) -> None:
    """Send every botocore request of this process to the emulator at `address` (call before any client or
    session is made: botocore copies its built-in handlers into each new session)."""
    from botocore.awsrequest import AWSResponse
    from botocore.handlers import BUILTIN_HANDLERS

    def connection() -> Connection:
        found = getattr(_local, "connection", None)
        if found is None:
            found = _local.connection = Client(address, family="AF_UNIX", authkey=authkey)
        return found

    def forward(request, **_: Any) -> AWSResponse:
        try:
            link = connection()
            link.send((request.method, request.url, list(request.headers.items()), _body_bytes(request.body)))
            outcome, value = link.recv()
        except (EOFError, OSError) as exc:
            _local.connection = None
            raise BridgeError(f"the local emulator is gone: {exc}") from exc
        if outcome != "ok":
            raise BridgeError(value)
        status, headers, body = value
        return AWSResponse(request.url, status, headers, _RawBody(body))

    BUILTIN_HANDLERS.append(("before-send", forward))
