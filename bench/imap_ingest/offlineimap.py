"""Second baseline: `offlineimap` (Debian offlineimap3, Python) pulling the same IMAP folders into a local
Maildir, read-only (`readonly = True`: the server is never written), one connection, one shot (`-o`)."""
from __future__ import annotations

from bench.imap_ingest.maildir_peer import timed_pull

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
    return timed_pull("offlineimap", "offlineimap3", _CONFIG, ["-o", "-u", "quiet"], port=port, user=user,
                      password=password, ca_pem=ca_pem)
