"""One full pull by an IMAP-to-Maildir peer (mbsync, offlineimap) over the bench's Dovecot, timed."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def timed_pull(name: str, package: str, config_template: str, args: list[str], *, port: int, user: str,
               password: str, ca_pem: bytes) -> tuple[float, int]:
    """(seconds, messages written to the local Maildir) for one run of `name -c <config> *args`. The config
    template gets `work`, `port`, `user`, `password`, `ca` (the CA file) and `maildir`."""
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} not installed (Debian package {package}; scripts/bootstrap.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix=f"mb-{name}-"))
    try:
        (work / "ca.pem").write_bytes(ca_pem)
        maildir = work / "Mail"
        maildir.mkdir()
        config = work / f"{name}rc"
        config.write_text(config_template.format(work=work, port=port, user=user, password=password,
                                                 ca=work / "ca.pem", maildir=maildir))
        started = time.perf_counter()
        result = subprocess.run([binary, "-c", str(config), *args], capture_output=True, text=True, timeout=1800)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed ({result.returncode}): {result.stderr[-2000:]}")
        count = sum(1 for path in maildir.rglob("*") if path.is_file() and path.parent.name in ("cur", "new"))
        return elapsed, count
    finally:
        shutil.rmtree(work, ignore_errors=True)
