"""Deleting stored mail: one message-deletion function (`delete`), mailbox purge, person erasure, retention."""
