"""Second baseline: `offlineimap` (Debian offlineimap3, Python) pulling the same IMAP folders into a local
Maildir, read-only (`readonly = True`: the server is never written), one connection, one shot (`-o`)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_CONFIG = """\
[general]
accounts = bench
metadata = {work}/metadata
ui = quiet

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {maildir}

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {port}
remoteuser = {user}
remotepass = {password}
ssl = yes
sslcacertfile = {ca}
readonly = True
maxconnections = 1
folderfilter = lambda name: name in ["INBOX", "Sent"]
"""


def run_offlineimap(*, port: int, user: str, password: str, ca_pem: bytes) -> tuple[float, int]:
    """(seconds, messages written to the local Maildir) for one full pull."""
    binary = shutil.which("offlineimap")
    if binary is None:
        raise RuntimeError("offlineimap not installed (Debian package offlineimap3; scripts/bootstrap.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="mb-offlineimap-"))
    try:
        (work / "ca.pem").write_bytes(ca_pem)
        maildir = work / "Mail"
        maildir.mkdir()
        config = work / "offlineimaprc"
        config.write_text(_CONFIG.format(work=work, port=port, user=user, password=password, ca=work / "ca.pem",
                                         maildir=maildir))
        started = time.perf_counter()
        result = subprocess.run([binary, "-c", str(config), "-o", "-u", "quiet"], capture_output=True, text=True,
                                timeout=1800)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"offlineimap failed ({result.returncode}): {result.stderr[-2000:]}")
        count = sum(1 for path in maildir.rglob("*") if path.is_file() and path.parent.name in ("cur", "new"))
        return elapsed, count
    finally:
        shutil.rmtree(work, ignore_errors=True)
