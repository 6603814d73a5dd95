"""Baseline: `mbsync` (Debian isync) pulling the same IMAP folders into a local Maildir (Sync Pull: the
server is never written)."""
from __future__ import annotations

from bench.imap_ingest.maildir_peer import timed_pull

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
    return timed_pull("mbsync", "isync", _CONFIG, ["-q", "bench"], port=port, user=user, password=password,
                      ca_pem=ca_pem)
