"""Mail servers (presets, OAuth apps), mailboxes, their verification and their shares (service layer)."""
