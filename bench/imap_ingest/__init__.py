"""IMAP ingest benchmark: `python -m bench.imap_ingest` (see __main__.py)."""
