"""Where the mail corpora live: the project's own fixtures, CPython's `test/test_email/data` (when the
interpreter ships its tests) and the public malformed-mail corpora beside the project
(`<project>/../shared/corpora`: flanker, mail-parser; Apache-2.0, see their LICENSE files there).
`MAILBRIDGE_SHARED_DIR` points elsewhere (a git worktree whose parent has no `shared/`)."""
from __future__ import annotations

import email
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mail"
CPYTHON_DATA = Path(email.__file__).parent.parent / "test" / "test_email" / "data"
SHARED = Path(os.environ.get("MAILBRIDGE_SHARED_DIR") or ROOT.parent / "shared") / "corpora"
PUBLIC = (SHARED / "flanker", SHARED / "mail-parser")
_NOT_MAIL = {"LICENSE", "LICENSE.txt", "NOTICE.txt", "README.md"}


def corpus_files() -> list[Path]:
    roots = [CPYTHON_DATA, *PUBLIC, FIXTURES]
    return sorted(p for root in roots if root.is_dir() for p in root.rglob("*")
                  if p.is_file() and p.name not in _NOT_MAIL)


def label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"
