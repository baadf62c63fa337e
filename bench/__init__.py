"""Telepath's benchmark: a SIP load generator, a fake agent and a report (docs/performance.md).

Run ``python -m bench.run --help``. Every process here talks to loopback only, for bounded
counts and durations, and stops by itself.
"""
