"""What the IMAP provider needs beyond `ProviderContext`: SSRF-vetted IMAP/SMTP endpoints and the passwords."""
from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.providers.base import ConnectionSettings, ProviderContext


@dataclass(frozen=True)
class ImapContext(ProviderContext):
    imap: ConnectionSettings | None = None
    smtp: ConnectionSettings | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
