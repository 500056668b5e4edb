"""Async in-process test client and pytest plugin for tether (being written)."""
