"""A loopback IMAP server that refuses logins the way a busy server does (RFC 3501 §7.1.5 untagged BYE), with
Dovecot's own text: "Maximum number of connections from user+IP exceeded". For tests of throttling."""
from __future__ import annotations

import socket
import threading

BYE = b"* BYE Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)\r\n"


class ThrottlingImapServer:
    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
            for line in lines:
                tag, _, rest = line.strip().partition(b" ")
                command = rest.split(b" ", 1)[0].upper()
                if command == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                elif command == b"AUTHENTICATE":
                    conn.sendall(b"+ \r\n")
                    lines.readline()             # the SASL PLAIN credentials
                    conn.sendall(BYE)
                    return
                elif command == b"LOGIN":
                    conn.sendall(BYE)
                    return
                else:
                    conn.sendall(tag + b" BAD not now\r\n")

    def close(self) -> None:
        self.sock.close()
