"""Provider push receivers (Graph change notifications): verify, find the mailbox, request a sync."""
