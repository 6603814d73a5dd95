"""Stored messages as the API shows them: listing, detail, attachments, raw, hide."""
