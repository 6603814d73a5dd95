"""Baseline: `mbsync` (Debian isync) pulling the same IMAP folders into a local Maildir (Sync Pull: the
server is never written)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_CONFIG = """\
IMAPAccount bench
Host localhost
Port {port}
User {user}
Pass {password}
SSLType IMAPS
CertificateFile {ca}
AuthMechs PLAIN

IMAPStore remote
Account bench

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns INBOX Sent
Create Near
Sync Pull
Expunge None
SyncState *
"""


def run_mbsync(*, port: int, user: str, password: str, ca_pem: bytes) -> tuple[float, int]:
    """(seconds, messages written to the local Maildir) for one full pull."""
    binary = shutil.which("mbsync")
    if binary is None:
        raise RuntimeError("mbsync not installed (Debian package isync; scripts/bootstrap.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="mb-mbsync-"))
    try:
        (work / "ca.pem").write_bytes(ca_pem)
        maildir = work / "Mail"
        maildir.mkdir()
        config = work / "mbsyncrc"
        config.write_text(_CONFIG.format(port=port, user=user, password=password, ca=work / "ca.pem",
                                         maildir=maildir))
        started = time.perf_counter()
        result = subprocess.run([binary, "-c", str(config), "-q", "bench"], capture_output=True, text=True,
                                timeout=1800)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"mbsync failed ({result.returncode}): {result.stderr[-2000:]}")
        count = sum(1 for path in maildir.rglob("*") if path.is_file() and path.parent.name in ("cur", "new"))
        return elapsed, count
    finally:
        shutil.rmtree(work, ignore_errors=True)
