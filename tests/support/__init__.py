"""Test support: in-memory implementations of Telepath's seams (not mocks of our code)."""
