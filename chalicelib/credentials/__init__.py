"""Mailbox credentials outside the sync engine: one store (KMS-sealed, versioned) and OAuth token sources."""
