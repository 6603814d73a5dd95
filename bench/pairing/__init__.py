"""Pairing benchmark: `python -m bench.pairing` (see `__main__.py`)."""
