"""Benchmarks (not tests): `python -m bench` runs them all; each prints its figures (see docs/benchmarks.md)."""
