"""Gmail API provider (planned: the Gmail issue). Not registered in providers/registry.py yet."""
