"""Docvault benchmarks: ratios measured side by side in one run. Never part of the tests.

Run `make bench` (or `python -m bench [crypto|memory|http|all] [--quick]`); every run appends its
tables and the machine's facts to bench/RESULTS.md.
"""
