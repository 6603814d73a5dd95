"""A real Dovecot IMAP server for tests (`tests/dovecot.py`), benchmarks (`bench/imap_ingest`) and the demo
(`python -m devservers`).

`DovecotServer` writes its own dovecot.conf into a private temp dir and runs `dovecot -F -c <conf>` on
127.0.0.1: plaintext IMAP on `port` (STARTTLS offered) and implicit TLS on `tls_port`, with a self-signed CA
generated here (`ca_pem`). Users come from one passwd-file per user (plaintext passwords), read when it
is new, so `new_user()` works while the server runs. Mail is Maildir under the temp dir.

Facts this relies on (Dovecot 2.3, Debian `dovecot-imapd`):
- imap-login refuses to run as root: `default_login_user = dovenull`, `default_internal_user = dovecot`, and
  mail files must belong to a non-root uid (the `dovecot` system user here; the current user when not root).
- CONDSTORE/QRESYNC, LIST-STATUS and SPECIAL-USE are built in; `\\Sent` comes from the namespace config.
- Dovecot cannot DELETE INBOX; a new UIDVALIDITY for INBOX is forced with `doveadm mailbox update`.

Helpers speak IMAP as the user (imapclient) and never set \\Seen on messages they read (BODY.PEEK[]).
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
_COUNTER = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_self_signed(hostname: str = "localhost") -> tuple[bytes, bytes]:
    """(cert_pem, key_pem): a self-signed CA-capable certificate for `hostname` and 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{base}/tls/cert.pem
ssl_key = <{base}/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
{nonroot}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {base}/users/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
}}
# Without this socket the auth process disables its per-IP failure penalty (up to 15 s delays after a few
# wrong passwords from 127.0.0.1, which would stall every later login of the test session).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""

# Without root, Dovecot can neither chroot nor switch users: every service runs as the current user.
_NONROOT = """\
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  chroot =
}
"""


class DovecotServer:
    """One Dovecot instance in a private temp dir. Use as a context manager or call start()/stop()."""

    host = "127.0.0.1"

    def __init__(self, base_dir: str | None = None):
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="mb-dovecot-"))
        self._owns_base = base_dir is None
        self.port = free_port()
        self.tls_port = free_port()
        self.process: subprocess.Popen | None = None
        self.passwords: dict[str, str] = {}
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("dovecot")
            self.login_user, self.internal_user = "dovenull", "dovecot"
        else:
            mail_user = pwd.getpwuid(os.geteuid())
            self.login_user = self.internal_user = mail_user.pw_name
        self.uid, self.gid = mail_user.pw_uid, mail_user.pw_gid
        self.ca_pem, self._key_pem = make_self_signed("localhost")

    # ---- lifecycle -------------------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.base / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.base / "dovecot.log"

    def start(self, timeout: float = 15.0) -> "DovecotServer":
        # The dir tree must be traversable by the mail uid (the temp dir is 0700 by default).
        os.chmod(self.base, 0o755)
        for sub in ("run", "state", "tls", "home"):
            (self.base / sub).mkdir(exist_ok=True)
        os.chown(self.base / "home", self.uid, self.gid)
        (self.base / "tls" / "cert.pem").write_bytes(self.ca_pem)
        key = self.base / "tls" / "key.pem"
        key.write_bytes(self._key_pem)
        os.chmod(key, 0o600)
        users = self.base / "users"
        users.mkdir(exist_ok=True)
        os.chmod(users, 0o755)
        self.conf_path.write_text(_CONF.format(
            base=self.base, port=self.port, tls_port=self.tls_port, login_user=self.login_user,
            internal_user=self.internal_user, nonroot="" if os.geteuid() == 0 else _NONROOT))
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf_path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        preexec_fn=_die_with_parent, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"dovecot exited with {self.process.returncode}: {err}\n{self.log()}")
            if self._accepts(self.port) and self._accepts(self.tls_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen within {timeout}s\n{self.log()}")

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "DovecotServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no dovecot log)"

    # ---- users -----------------------------------------------------------------------------------------

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """A fresh mailbox owner: (username, password), unique per call so tests never share mail."""
        n = next(_COUNTER)
        username = f"{prefix}{os.getpid()}x{n}"
        password = f"pw-{n}-{os.urandom(4).hex()}"
        home = self.base / "home" / username
        # One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a second, but a
        # new path is read at once.
        entry = self.base / "users" / username
        entry.write_text(f"{username}:{password}:{self.uid}:{self.gid}::{home}::\n")
        os.chmod(entry, 0o644)
        self.passwords[username] = password
        return username, password

    # ---- IMAP helpers (as the user) ----------------------------------------------------------------------

    def connect(self, user: str) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(user, self.passwords[user])
        return client

    def _session(self, user: str, folder: str | None = None, readonly: bool = True) -> "_Session":
        return _Session(self, user, folder, readonly)

    def append(self, user: str, folder: str, raw: bytes, flags: Iterable[str] = (),
               date: dt.datetime | None = None) -> int | None:
        """APPEND a message; returns its UID (from APPENDUID, RFC 4315) when the server reports one."""
        with self._session(user) as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            resp = c.append(folder, raw, flags=tuple(flags), msg_time=date)
        return _appenduid(resp)

    def append_many(self, user: str, folder: str,
                    messages: Iterable[tuple[bytes, Iterable[str], dt.datetime | None]], batch: int = 100) -> int:
        """Bulk load with MULTIAPPEND (RFC 3502), `batch` messages per command; returns how many."""
        count = 0
        with self._session(user) as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            chunk: list[dict] = []
            for raw, flags, date in messages:
                item: dict = {"msg": raw, "flags": tuple(flags)}
                if date is not None:
                    item["date"] = date
                chunk.append(item)
                if len(chunk) >= batch:
                    c.multiappend(folder, chunk)
                    count, chunk = count + len(chunk), []
            if chunk:
                c.multiappend(folder, chunk)
                count += len(chunk)
        return count

    def uids(self, user: str, folder: str) -> list[int]:
        with self._session(user, folder) as c:
            return sorted(c.search("ALL"))

    def flags(self, user: str, folder: str) -> dict[int, tuple[str, ...]]:
        """{uid: sorted flags} without the session-only \\Recent flag."""
        with self._session(user, folder) as c:
            uids = c.search("ALL")
            if not uids:
                return {}
            return {uid: tuple(sorted(_s(f) for f in d[b"FLAGS"] if f != b"\\Recent"))
                    for uid, d in c.fetch(uids, ["FLAGS"]).items()}

    def delete(self, user: str, folder: str, uid: int) -> None:
        """Expunge one message (as if the user deleted it in their mail client)."""
        with self._session(user, folder, readonly=False) as c:
            c.add_flags([uid], [b"\\Deleted"], silent=True)
            c.uid_expunge([uid])

    def set_flags(self, user: str, folder: str, uid: int, flags: Iterable[str]) -> None:
        with self._session(user, folder, readonly=False) as c:
            c.set_flags([uid], list(flags), silent=True)

    def recreate_folder(self, user: str, folder: str) -> int:
        """Give `folder` a new UIDVALIDITY holding the same messages (flags and dates kept); returns it.

        Other folders: DELETE + CREATE + APPEND. INBOX cannot be deleted, so its messages are expunged, the
        UIDVALIDITY is bumped with `doveadm mailbox update --uid-validity`, and the messages appended again."""
        with self._session(user, folder) as c:
            old = c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"]
            uids = c.search("ALL")
            msgs = list(c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]).values()) if uids else []
        if folder.upper() == "INBOX":
            with self._session(user, folder, readonly=False) as c:
                if uids:
                    c.add_flags(uids, [b"\\Deleted"], silent=True)
                    c.expunge()
            self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(old + 1000), folder)
        else:
            with self._session(user) as c:
                c.delete_folder(folder)
                c.create_folder(folder)
        with self._session(user) as c:
            for m in msgs:
                flags = [f for f in m[b"FLAGS"] if f != b"\\Recent"]
                c.append(folder, m[b"BODY[]"], flags=flags, msg_time=m[b"INTERNALDATE"])
            new = c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"]
        assert new != old, "UIDVALIDITY did not change"
        return new

    def snapshot(self, user: str) -> dict[str, dict[int, tuple[tuple[str, ...], bytes]]]:
        """Every folder → {uid: (sorted flags, raw bytes)}; compare two snapshots to prove nothing changed."""
        out: dict[str, dict[int, tuple[tuple[str, ...], bytes]]] = {}
        with self._session(user) as c:
            for _flags, _sep, name in c.list_folders():
                c.select_folder(name, readonly=True)
                uids = c.search("ALL")
                data = c.fetch(uids, ["FLAGS", "BODY.PEEK[]"]) if uids else {}
                out[name] = {uid: (tuple(sorted(_s(f) for f in d[b"FLAGS"] if f != b"\\Recent")), d[b"BODY[]"])
                             for uid, d in data.items()}
        return out

    def status(self, user: str, folder: str) -> dict[str, int]:
        with self._session(user) as c:
            st = c.folder_status(folder, ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ"])
        return {_s(k): v for k, v in st.items()}

    def doveadm(self, *args: str) -> str:
        result = subprocess.run([DOVEADM, "-c", str(self.conf_path), *args], capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this server's self-signed CA (hostname "localhost")."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        return ctx


def _die_with_parent() -> None:
    """Linux: SIGTERM the Dovecot master when the Python process that started it dies (even by SIGKILL), so a
    crashed test run leaves no server behind."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except Exception:  # noqa: BLE001 - best effort on other platforms
        pass


class _Session:
    def __init__(self, server: DovecotServer, user: str, folder: str | None, readonly: bool):
        self.server, self.user, self.folder, self.readonly = server, user, folder, readonly

    def __enter__(self) -> IMAPClient:
        self.client = self.server.connect(self.user)
        if self.folder:
            self.client.select_folder(self.folder, readonly=self.readonly)
        return self.client

    def __exit__(self, *exc) -> None:
        try:
            self.client.logout()
        except Exception:
            pass


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _appenduid(resp) -> int | None:
    text = _s(resp or b"")
    if "APPENDUID" in text.upper():
        try:
            return int(text.upper().split("APPENDUID", 1)[1].split("]")[0].split()[1])
        except (IndexError, ValueError):
            return None
    return None
