"""Tardis remote HTTP API (tardisremote)."""
