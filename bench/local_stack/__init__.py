"""Local stack benchmark: `python -m bench.local_stack` (see __main__.py)."""
