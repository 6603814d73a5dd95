"""A TCP proxy on loopback in front of a real IMAP server that misbehaves on the server → client stream once
the client has sent a FETCH (RFC 3501 §6.4.5, the command that carries message bodies):

- `reset`: after `after_bytes` of the FETCH response, the connection is reset (SO_LINGER 0 → RST);
- `stall`: after `after_bytes`, nothing more is forwarded while the connection stays open;
- `drip`: the response is forwarded `chunk` bytes at a time with `pause` seconds between chunks;
- `pass`: a plain proxy.
For tests of the IMAP provider and the engine under network faults."""
from __future__ import annotations

import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port: int, mode: str = "pass", *, after_bytes: int = 4096, chunk: int = 256,
                 pause: float = 0.005):
        self.upstream_port, self.mode = upstream_port, mode
        self.after_bytes, self.chunk, self.pause = after_bytes, chunk, pause
        self.faults = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._open += [client, upstream]
            state = {"fetching": False, "sent": 0, "mode": self.mode}
            threading.Thread(target=self._client_to_server, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(upstream, client, state), daemon=True).start()

    def _client_to_server(self, client, upstream, state) -> None:
        try:
            while data := client.recv(65536):
                if b" FETCH " in data.upper():
                    state["fetching"] = True
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _server_to_client(self, upstream, client, state) -> None:
        try:
            while data := upstream.recv(65536):
                mode = state["mode"] if state["fetching"] else "pass"
                if mode == "pass":
                    client.sendall(data)
                    continue
                if mode == "drip":
                    for start in range(0, len(data), self.chunk):
                        client.sendall(data[start:start + self.chunk])
                        time.sleep(self.pause)
                    continue
                room = self.after_bytes - state["sent"]
                if room > 0:
                    client.sendall(data[:room])
                    state["sent"] += min(room, len(data))
                if state["sent"] < self.after_bytes:
                    continue
                self.faults += 1
                if mode == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                    return
                while True:                                 # stall: hold the connection, forward nothing
                    if not upstream.recv(65536):
                        return
        except OSError:
            pass
        finally:
            _close(client)

    def close(self) -> None:
        self.sock.close()
        for sock in self._open:
            _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
